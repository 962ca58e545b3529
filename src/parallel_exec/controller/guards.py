"""Guards: limits the controller enforces on the tests its workers run.  Decisions
only, from plain numbers: no signal is sent and no file is read here.

``Guard.check`` looks at what one worker runs:

- its time (``--test-timeout``, or the test's own limit from its markers): a test still
  running after the limit (setup, call and teardown) is ended in three steps, each its
  own decision so that the dispatcher only carries them out: ask the worker for every
  thread's stack (``DumpStacks``: the worker registered faulthandler on ``SIGUSR1``
  and writes to the stderr file the controller reads, then what the test captured so
  far), ``Terminate`` (SIGTERM to its process group) once the dump had time, ``Kill``
  after the grace period;
- its memory (``--max-worker-memory``: the worker and the processes it started): past
  the limit while a test runs, the worker is killed at once (``Kill``) and the test
  fails with a ``MemoryError``;
- the run's deadline (``--run-timeout``): every running test is ended as for a timeout;
- slowness (``--slow-after``): ``Slow`` once per period while the test runs.

The worker's end is then attributed with the reason (``ending``/``ended``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..processes import format_size
from ..worker.limits import effective_limit

#: Time the worker gets to write its stacks before it is terminated (seconds).
DUMP_SECONDS = 0.3
#: ``--slow-after auto``: this many times the predicted duration, at least ``SLOW_MIN``.
SLOW_FACTOR = 3.0
SLOW_MIN = 5.0


@dataclass(frozen=True)
class DumpStacks:
    worker: str


@dataclass(frozen=True)
class Terminate:
    worker: str


@dataclass(frozen=True)
class Kill:
    worker: str


@dataclass(frozen=True)
class Slow:
    """``worker``'s test ``index`` runs for ``seconds`` already."""

    worker: str
    index: int
    seconds: float


@dataclass(frozen=True)
class EndReason:
    """Why the controller ends a worker's test: the test's failure message, and whether
    the worker's stacks were asked for (they are then the failure's text)."""

    #: ``timeout``, ``memory`` or ``run-timeout``.
    kind: str
    message: str
    #: The limit in seconds or bytes.
    limit: float
    stacks: bool = True


@dataclass(frozen=True)
class Ending:
    """``worker``'s test ``index`` reached a limit: its worker is ended (the steps
    follow), and the test fails for ``reason``."""

    worker: str
    index: int
    reason: EndReason


GuardAction = Ending | DumpStacks | Terminate | Kill | Slow


def timeout_message(limit: float) -> str:
    return f"Timeout: exceeded {limit:.1f} s"


def memory_message(limit: int, peak: int) -> str:
    return f"MemoryError: worker exceeded {format_size(limit)} (peak {format_size(peak)})"


def run_timeout_message(limit: float) -> str:
    return f"Timeout: the run reached --run-timeout {limit:.1f} s"


@dataclass
class Ended:
    """A worker the guard ends: for test ``index``, running since ``since`` (wall
    clock), for ``reason``; ``step`` and ``at``: where the ending is."""

    index: int
    reason: EndReason
    since: float
    step: str  # "dump", "terminate", "kill"
    at: float


@dataclass
class Guard:
    #: ``--test-timeout`` (None: only tests' own limits).
    limit: float | None = None
    grace: float = 5.0
    #: ``--max-worker-memory`` in bytes (None: off).
    memory: int | None = None
    #: ``--slow-after`` in seconds, -1 for ``auto`` (None: off).
    slow_after: float | None = None
    _ending: dict[str, Ended] = field(default_factory=dict)
    #: Largest memory seen per worker.
    peaks: dict[str, int] = field(default_factory=dict)
    #: Per worker: the test it is being watched for slowness and when it was last told.
    _slow: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: The run's deadline passed: every running test is ended.
    _deadline: EndReason | None = None

    def check(
        self,
        worker: str,
        index: int,
        since: float,
        wall: float,
        now: float,
        own_limit: float = 0.0,
        predicted: float | None = None,
    ) -> list[GuardAction]:
        """``worker`` runs test ``index`` since ``since`` (wall clock ``wall`` now;
        ``now``: a monotonic clock for the steps; ``own_limit``: the test's own limit, 0
        for the run's); ``index`` -1: nothing runs."""
        ending = self._ending.get(worker)
        if ending is None:
            if index < 0:
                self._slow.pop(worker, None)
                return []
            limit = effective_limit(own_limit, self.limit)
            if self._deadline is not None:
                return self._begin(worker, index, self._deadline, since, now)
            if limit is not None and wall - since >= limit:
                reason = EndReason("timeout", timeout_message(limit), limit)
                return self._begin(worker, index, reason, since, now)
            return self._slowness(worker, index, wall - since, predicted)
        return self._next_step(ending, worker, now)

    def _begin(
        self, worker: str, index: int, reason: EndReason, since: float, now: float
    ) -> list[GuardAction]:
        self._slow.pop(worker, None)
        if not reason.stacks:
            self._ending[worker] = Ended(index, reason, since, "kill", now)
            return [Ending(worker, index, reason), Kill(worker)]
        self._ending[worker] = Ended(index, reason, since, "dump", now)
        return [Ending(worker, index, reason), DumpStacks(worker)]

    def _next_step(self, ending: Ended, worker: str, now: float) -> list[GuardAction]:
        if ending.step == "dump" and now - ending.at >= DUMP_SECONDS:
            ending.step, ending.at = "terminate", now
            return [Terminate(worker)]
        if ending.step == "terminate" and now - ending.at >= self.grace:
            ending.step, ending.at = "kill", now
            return [Kill(worker)]
        return []

    def _slowness(
        self, worker: str, index: int, running: float, predicted: float | None
    ) -> list[GuardAction]:
        if self.slow_after is None:
            return []
        period = self.slow_after
        if period < 0:  # auto
            if predicted is None:
                return []
            period = max(SLOW_MIN, SLOW_FACTOR * predicted)
        watched, told = self._slow.get(worker, (index, 0.0))
        if watched != index:
            told = 0.0
        if running >= told + period:
            told = running - (running % period)
            self._slow[worker] = (index, told)
            return [Slow(worker, index, running)]
        self._slow[worker] = (index, told)
        return []

    def sample_memory(
        self, worker: str, index: int, rss: int, now: float, since: float = 0.0
    ) -> list[GuardAction]:
        """The memory of ``worker`` (and its processes) is ``rss`` while it runs test
        ``index`` (-1: none; between tests the worker retires by itself)."""
        if rss > self.peaks.get(worker, 0):
            self.peaks[worker] = rss
        if self.memory is None or index < 0 or rss <= self.memory or worker in self._ending:
            return []
        peak = self.peaks[worker]
        reason = EndReason("memory", memory_message(self.memory, peak), self.memory, stacks=False)
        return self._begin(worker, index, reason, since, now)

    def deadline(self, limit: float) -> None:
        """``--run-timeout`` passed: every test running now or later is ended."""
        self._deadline = EndReason("run-timeout", run_timeout_message(limit), limit)

    def ending(self, worker: str) -> Ended | None:
        """The test a worker is being ended for, and why (None: it is not)."""
        return self._ending.get(worker)

    def ended(self, worker: str) -> Ended | None:
        """The worker is gone: the test it was ended for, and why (forgotten now)."""
        self._slow.pop(worker, None)
        return self._ending.pop(worker, None)
