"""Guards: limits the controller enforces on the tests its workers run.

``TimeoutGuard`` (``--test-timeout``): a test still running after the limit (setup, call
and teardown) is ended in three steps, each its own decision so that the dispatcher
only carries them out: ask the worker for every thread's stack (``DumpStacks``: the
worker registered faulthandler on ``SIGUSR1`` and writes to the stderr file the
controller reads), then ``Terminate`` (SIGTERM) once the dump had time, then ``Kill``
after the grace period.  The worker's end is then attributed as usual, with a timeout's
wording (``timed_out``).  Decisions only: no signal is sent here.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Time the worker gets to write its stacks before it is terminated (seconds).
DUMP_SECONDS = 0.3


@dataclass(frozen=True)
class DumpStacks:
    worker: str


@dataclass(frozen=True)
class Terminate:
    worker: str


@dataclass(frozen=True)
class Kill:
    worker: str


GuardAction = DumpStacks | Terminate | Kill


@dataclass
class _Ending:
    index: int
    step: str  # "dump", "terminate", "kill"
    at: float


class TimeoutGuard:
    def __init__(self, limit: float | None, grace: float) -> None:
        self.limit = limit
        self.grace = grace
        self._ending: dict[str, _Ending] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.limit)

    def check(
        self, worker: str, index: int, since: float, wall: float, now: float
    ) -> list[GuardAction]:
        """``worker`` runs test ``index`` since ``since`` (wall clock ``wall`` now;
        ``now``: a monotonic clock for the steps).  ``index`` -1: nothing runs."""
        ending = self._ending.get(worker)
        if ending is None:
            if self.limit is None or index < 0 or wall - since < self.limit:
                return []
            self._ending[worker] = _Ending(index, "dump", now)
            return [DumpStacks(worker)]
        if ending.step == "dump" and now - ending.at >= DUMP_SECONDS:
            ending.step, ending.at = "terminate", now
            return [Terminate(worker)]
        if ending.step == "terminate" and now - ending.at >= self.grace:
            ending.step, ending.at = "kill", now
            return [Kill(worker)]
        return []

    def ending(self, worker: str) -> int | None:
        """The test a worker is being ended for (None: it is not)."""
        ending = self._ending.get(worker)
        return ending.index if ending is not None else None

    def ended(self, worker: str) -> int | None:
        """The worker is gone: the test it was ended for, if it was (forgotten now)."""
        ending = self._ending.pop(worker, None)
        return ending.index if ending is not None else None
