"""``load``: dynamic distribution in guided chunks, with file affinity.

Workers pull: each asks for more when its local queue runs low.  A chunk is a fraction
of what is left (``remaining / (2 * workers)``, at least one test), so early chunks are
large (few messages, low overhead for many fast tests) and late chunks are single tests
(a long test near the end cannot strand queued work behind it).

Tests belong to files, and a file has an owner: the worker that collected it (workers
split collection between them, so a file is imported by one worker unless work has to
move).  A worker is fed from its own files first, then from files nobody owns, and only
then steals from the worker with the most unassigned tests, taking over one of that
worker's files from the end.  When nothing is left a worker that asks is drained: it
runs its queue, the last test with ``nextitem=None`` so that session fixtures are torn
down, and ends.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence

from .base import Assign, Decision, Drain, retry_target


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
        return []

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

    def _feed(self, worker: str) -> list[Decision]:
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
