"""``load``: dynamic distribution from one shared queue, in guided chunks.

Workers pull: each asks for more when its local queue runs low.  A chunk is a fraction
of what is left (``remaining / (2 * workers)``, at least one test), so early chunks are
large (few messages, low overhead for many fast tests) and late chunks are single tests
(a long test near the end cannot strand a pile of queued work behind it).  When the
shared queue is empty a worker that asks is drained: it runs its queue, the last test
with ``nextitem=None`` so that session fixtures are torn down, and ends.
"""

from __future__ import annotations

import math
from collections import deque

from .base import Assign, Decision, Drain


class LoadScheduler:
    def __init__(self, test_count: int, planned_workers: int, chunk_divisor: int = 2) -> None:
        self._queue: deque[int] = deque(range(test_count))
        self._planned = max(1, planned_workers)
        self._divisor = max(1, chunk_divisor)
        self._pending: dict[str, list[int]] = {}
        self._drained: set[str] = set()
        self._finished: set[int] = set()
        self._lost: set[int] = set()
        self._test_count = test_count
        self._stopped = False

    # ------------------------------------------------------------------ events

    def worker_joined(self, worker: str) -> list[Decision]:
        self._pending.setdefault(worker, [])
        return self._feed(worker)

    def work_requested(self, worker: str) -> list[Decision]:
        if worker not in self._pending or worker in self._drained:
            return []
        return self._feed(worker)

    def test_finished(self, worker: str, test: int) -> list[Decision]:
        pending = self._pending.get(worker)
        if pending is not None and test in pending:
            pending.remove(test)
        self._finished.add(test)
        return []

    def worker_lost(self, worker: str, crashed: int | None) -> list[Decision]:
        pending = self._pending.pop(worker, [])
        self._drained.discard(worker)
        if crashed is not None:
            self._finished.add(crashed)
        requeue = [t for t in pending if t != crashed and t not in self._finished]
        self._queue.extendleft(reversed(requeue))
        return []

    def stop(self) -> None:
        self._stopped = True

    # ------------------------------------------------------------------ queries

    def pending(self, worker: str) -> tuple[int, ...]:
        return tuple(self._pending.get(worker, ()))

    @property
    def unassigned(self) -> tuple[int, ...]:
        return tuple(self._queue)

    @property
    def done(self) -> bool:
        if any(self._pending.values()):
            return False
        return self._stopped or not self._queue

    # ------------------------------------------------------------------ helpers

    def _chunk_size(self) -> int:
        return max(1, math.ceil(len(self._queue) / (self._divisor * self._planned)))

    def _feed(self, worker: str) -> list[Decision]:
        if self._stopped or not self._queue:
            self._drained.add(worker)
            return [Drain(worker)]
        size = self._chunk_size()
        tests = tuple(self._queue.popleft() for _ in range(min(size, len(self._queue))))
        self._pending[worker].extend(tests)
        return [Assign(worker, tests)]
