"""``load``: dynamic distribution in guided chunks, with file affinity.

Workers pull: each asks for more when its local queue runs low.  A chunk is a fraction
of what is left (``remaining / (2 * workers)``, at least one test), so early chunks are
large (few messages, low overhead for many fast tests) and late chunks are single tests
(a long test near the end cannot strand queued work behind it).

Tests belong to files, and a file has an owner: the worker that collected it (workers
split collection between them, so a file is imported by one worker unless work has to
move).  A worker is fed from its own files first, then from files nobody owns, and only
then steals from the worker with the most unassigned tests, taking over one of that
worker's files from the end.

When nothing is unassigned, a worker that asks takes work back from the worker holding
the most tests it has not started (``Reclaim``): the later half of them, beyond the two
it runs now and next.  Chunks are sized by count, not time (there is no history here),
so a chunk can hold long tests while another worker has run out; the asker waits for the
answer (``tests_released``: what the holder had not started by then), one reclaim at a
time.  A holder that gave nothing back is not asked again until one of its tests
finishes.  When nothing is left to take back a worker that asks is drained: it runs its
queue, the last test with ``nextitem=None`` so that session fixtures are torn down, and
ends.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence

from .base import Assign, Decision, Drain, Reclaim, retry_target


class LoadScheduler:
    def __init__(
        self,
        test_files: Sequence[int],
        owners: Mapping[int, str],
        planned_workers: int,
        chunk_divisor: int = 2,
    ) -> None:
        self._test_count = len(test_files)
        self._file_of = list(test_files)
        self._queues: dict[int, deque[int]] = {}
        for test, file in enumerate(test_files):
            self._queues.setdefault(file, deque()).append(test)
        self._queues = dict(sorted(self._queues.items()))
        self._owner: dict[int, str | None] = {f: owners.get(f) for f in self._queues}
        self._planned = max(1, planned_workers)
        self._divisor = max(1, chunk_divisor)
        self._pending: dict[str, list[int]] = {}
        self._drained: set[str] = set()
        self._finished: set[int] = set()
        self._unassigned = self._test_count
        self._stopped = False
        #: The worker asked to give tests back, and which (one reclaim at a time).
        self._reclaiming: dict[str, tuple[int, ...]] = {}
        #: Workers whose request waits for the reclaim's answer, in the order they asked.
        self._waiting: list[str] = []
        #: Holders that gave nothing back, until one of their tests finishes.
        self._refused: set[str] = set()

    # ------------------------------------------------------------------ events

    predicted_makespan: float | None = None
    plan: tuple[tuple[int, ...], ...] = ()

    def worker_joined(self, worker: str, now: float = 0.0) -> list[Decision]:
        self._pending.setdefault(worker, [])
        return self._feed(worker)

    def work_requested(self, worker: str, now: float = 0.0) -> list[Decision]:
        """Always answered: a chunk, or a ``Drain`` (a drained worker already has one)."""
        if worker not in self._pending or worker in self._drained:
            return []
        return self._feed(worker)

    def test_started(self, worker: str, test: int, now: float = 0.0) -> list[Decision]:
        return []  # no straggler handling: when a test started does not matter here

    def worker_idle(self, worker: str, now: float = 0.0) -> list[Decision]:
        return []

    def test_finished(self, worker: str, test: int, now: float = 0.0) -> list[Decision]:
        pending = self._pending.get(worker)
        if pending is not None and test in pending:
            pending.remove(test)
        self._finished.add(test)
        self._refused.discard(worker)
        return []

    def retry(self, test: int, failed_on: str) -> list[Decision]:
        self._finished.discard(test)
        target = None if self._stopped else retry_target(self._pending, self._drained, failed_on)
        if target is None:
            self._queues[self._file_of[test]].appendleft(test)
            self._unassigned += 1
            return []
        self._pending[target].append(test)
        return [Assign(target, (test,))]

    def worker_lost(self, worker: str, crashed: int | None) -> list[Decision]:
        pending = self._pending.pop(worker, [])
        self._drained.discard(worker)
        if crashed is not None:
            self._finished.add(crashed)
        for test in reversed(pending):
            if test != crashed and test not in self._finished:
                self._queues[self._file_of[test]].appendleft(test)
                self._unassigned += 1
        for file, owner in self._owner.items():
            if owner == worker:
                self._owner[file] = None
        if worker in self._waiting:
            self._waiting.remove(worker)
        self._refused.discard(worker)
        if self._reclaiming.pop(worker, None) is None:
            return []
        return self._answer_waiting()

    def tests_released(self, worker: str, tests: Sequence[int]) -> list[Decision]:
        if self._reclaiming.pop(worker, None) is None:
            return []  # not asked (or lost since): what it held went back with it
        pending = self._pending.get(worker, [])
        back = [t for t in tests if t in pending and t not in self._finished]
        if not back:
            self._refused.add(worker)
        for test in back:
            pending.remove(test)
        for test in reversed(back):  # at the front of their files' queues, in order
            file = self._file_of[test]
            self._queues[file].appendleft(test)
            self._owner[file] = None  # whoever takes them first
        self._unassigned += len(back)
        return self._answer_waiting()

    def tick(self, now: float) -> list[Decision]:
        return []

    def stop(self) -> None:
        self._stopped = True

    # ------------------------------------------------------------------ queries

    def pending(self, worker: str) -> tuple[int, ...]:
        return tuple(self._pending.get(worker, ()))

    @property
    def unassigned(self) -> tuple[int, ...]:
        return tuple(t for queue in self._queues.values() for t in queue)

    @property
    def done(self) -> bool:
        if any(self._pending.values()):
            return False
        return self._stopped or self._unassigned == 0

    def owner(self, file: int) -> str | None:
        return self._owner.get(file)

    # ------------------------------------------------------------------ helpers

    def _chunk_size(self) -> int:
        return max(1, math.ceil(self._unassigned / (self._divisor * self._planned)))

    def _sources(self, worker: str) -> list[int]:
        """Files to take from, best first: own, then unowned, then one stolen."""
        own = [f for f, q in self._queues.items() if q and self._owner[f] == worker]
        free = [f for f, q in self._queues.items() if q and self._owner[f] is None]
        if own or free:
            return own + free
        load: dict[str, int] = {}
        for f, q in self._queues.items():
            owner = self._owner[f]
            if q and owner is not None:
                load[owner] = load.get(owner, 0) + len(q)
        if not load:
            return []
        victim = max(load, key=lambda w: (load[w], w))
        victim_files = [f for f, q in self._queues.items() if q and self._owner[f] == victim]
        return victim_files[-1:]

    def _answer_waiting(self) -> list[Decision]:
        """The workers that waited for a reclaim's answer get work, wait for another
        reclaim, or are drained."""
        waiting, self._waiting = self._waiting, []
        decisions: list[Decision] = []
        for worker in waiting:
            if worker in self._pending and worker not in self._drained:
                decisions.extend(self._feed(worker))
        return decisions

    def _reclaim_for(self, worker: str) -> list[Decision] | None:
        """Nothing is unassigned: ask a holder for tests back, ``worker`` waiting for the
        answer (None: nobody holds any to spare)."""
        if self._reclaiming:
            if worker not in self._waiting:
                self._waiting.append(worker)
            return []
        spare: dict[str, int] = {}
        for other, pending in self._pending.items():
            if other != worker and other not in self._refused and len(pending) > 2:
                spare[other] = len(pending) - 2  # beyond the test it runs and the next
        if not spare:
            return None
        holder = max(spare, key=lambda w: (spare[w], w))
        tests = tuple(self._pending[holder][-math.ceil(spare[holder] / 2) :])
        self._reclaiming[holder] = tests
        self._waiting.append(worker)
        return [Reclaim(holder, tests)]

    def _feed(self, worker: str) -> list[Decision]:
        if not self._stopped and self._unassigned == 0:
            reclaim = self._reclaim_for(worker)
            if reclaim is not None:
                return reclaim
        if self._stopped or self._unassigned == 0:
            self._drained.add(worker)
            return [Drain(worker)]
        size = self._chunk_size()
        tests: list[int] = []
        for file in self._sources(worker):
            queue = self._queues[file]
            self._owner[file] = worker
            while queue and len(tests) < size:
                tests.append(queue.popleft())
            if len(tests) >= size:
                break
        self._unassigned -= len(tests)
        self._pending[worker].extend(tests)
        return [Assign(worker, tuple(tests))]
