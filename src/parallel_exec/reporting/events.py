"""The run-event stream: what happened in a parallel run, as typed events.

The controller publishes; consumers (the replay into pytest's hooks, and the report
writers and history that build on it) subscribe and never talk to each other.  A test
is published once, as ``TestFinished``, with all of its reports already grouped, so no
consumer has to re-assemble pytest's setup/call/teardown sequence; a crashed or
never-run test is published the same way, with reports the controller made for it.
"""

from __future__ import annotations

import signal
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from ..history.learning import LearningOutcome


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    workers: int
    strategy: str
    started_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class WorkerStarted:
    worker_id: str
    pid: int
    #: The crashed worker this one replaces (None: started for the run's own needs).
    replaces: str | None = None
    #: What the worker said of itself in the handshake (pytest-xdist's ``_rinfo()``):
    #: ``sys.platform``, ``sys.version_info[:5]``, ``sys.executable``, its directory.
    platform: str = ""
    version_info: tuple[Any, ...] = ()
    executable: str = ""
    cwd: str = ""


@dataclass(frozen=True)
class TestLimitReached:
    """A test reached a limit the controller enforces: it ran past ``--test-timeout``
    (``kind`` ``timeout``) or the run's ``--run-timeout`` (``run-timeout``), or its worker
    passed ``--max-worker-memory`` (``memory``).  Its worker is being ended (stacks,
    SIGTERM, SIGKILL after the grace period; at once for memory); its result follows as
    a ``TestFinished`` failed with ``message``."""

    __test__ = False  # not a test class, whatever its name

    worker_id: str
    nodeid: str
    kind: str
    message: str


@dataclass(frozen=True)
class TestSlow:
    """A test runs for ``seconds`` already (``--slow-after``), said once per period."""

    __test__ = False

    worker_id: str
    nodeid: str
    seconds: float


@dataclass(frozen=True)
class ProcessLeaked:
    """A test left a process running after its teardown (it is ended with the worker)."""

    worker_id: str
    nodeid: str
    pid: int
    command: str


@dataclass(frozen=True)
class WorkerRecycled:
    """A worker retired between two tests and is replaced (``--max-worker-tests``, or
    its memory grew near ``--max-worker-memory``): nothing failed."""

    worker_id: str
    reason: str


@dataclass(frozen=True)
class WorkerReady:
    """The worker's collection agreed with the canonical one and it takes work now."""

    worker_id: str


@dataclass(frozen=True)
class WorkerFinished:
    """The worker ended its session normally.  ``workeroutput`` is what its plugins
    put in ``config.workeroutput`` (pytest-cov's data, for one), as xdist hands it on."""

    worker_id: str
    exitstatus: int
    workeroutput: Mapping[str, Any]
    #: ``record_testsuite_property`` values recorded in the worker.
    suite_properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RunPlanned:
    """The canonical collection is adopted and the scheduler made: what the run expects.

    ``predictions`` are the history's ``(mean, stdev)`` of the tests it knows;
    ``predicted_makespan`` the scheduler's plan (None: ``load``, no plan)."""

    strategy: str
    workers: int
    tests: int
    predictions: Mapping[str, tuple[float, float]]
    predicted_makespan: float | None
    #: The tests planned on each worker slot, in order (empty: no plan).
    plan: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class ShardSelected:
    """``--shard I/N``: this run is shard ``index`` of ``count`` of a matrix; it runs
    ``tests`` of the suite's ``suite_tests``, predicted ``predicted`` seconds of work (the
    largest shard ``largest``; no split can beat ``lower_bound``)."""

    index: int
    count: int
    #: The matrix's id (``--shard-run-id``, else a digest of the plan's inputs).
    run_id: str
    #: The plan's fingerprint: the same on every shard of one matrix.
    fingerprint: str
    tests: int
    suite_tests: int
    predicted: float
    largest: float
    lower_bound: float
    #: The place in the whole suite's collection order of each of this shard's tests,
    #: in order: a merge puts the shards' results back in the suite's order.
    positions: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def properties(self) -> list[tuple[str, str]]:
        """The suite properties every JUnit report of a shard carries (a merge reads
        them: which shard, of which matrix, of which plan)."""
        return [
            ("parallel_exec.shard", self.label),
            ("parallel_exec.shard_run_id", self.run_id),
            ("parallel_exec.shard_plan", self.fingerprint),
            ("parallel_exec.shard_positions", encode_positions(self.positions)),
        ]


def encode_positions(positions: Sequence[int]) -> str:
    """``0-4,7,9-12``: ascending positions as ranges (a suite property stays short)."""
    parts: list[str] = []
    start = previous = None
    for position in positions:
        if previous is not None and position == previous + 1:
            previous = position
            continue
        if start is not None:
            parts.append(f"{start}-{previous}" if start != previous else f"{start}")
        start = previous = position
    if start is not None:
        parts.append(f"{start}-{previous}" if start != previous else f"{start}")
    return ",".join(parts)


def decode_positions(text: str) -> list[int]:
    """The inverse of ``encode_positions`` (ValueError on anything else)."""
    positions: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        positions.extend(range(int(first), int(last or first) + 1))
    return positions


@dataclass(frozen=True)
class TestStarted:
    """A worker began a test (one per attempt), with the worker's clock."""

    __test__ = False  # not a test class, despite the name

    worker_id: str
    nodeid: str
    started_at: float


@dataclass(frozen=True)
class Tick:
    """The run goes on (published about ten times a second by the run loop): what
    shows progress redraws on it, on the main thread."""

    now: float = field(default_factory=time.time)


@dataclass(frozen=True)
class RunNotice:
    """A line for the user about the run itself (fewer workers than asked, the fork
    server gone, a fatal error's text)."""

    text: str
    #: ``info``, ``warning`` (yellow) or ``error`` (red).
    level: str = "info"


@dataclass(frozen=True)
class InternalError:
    """A worker's INTERNALERROR (a hook or plugin that raised in pytest's machinery).
    ``same_as``: an earlier worker that reported the same text (it is not repeated)."""

    worker_id: str
    text: str
    same_as: str | None = None


@dataclass(frozen=True)
class CollectionFinished:
    worker_id: str
    nodeids: tuple[str, ...]
    collect_reports: tuple[pytest.CollectReport, ...]
    deselected: tuple[str, ...]
    warnings: tuple[WarningRecorded, ...]


@dataclass(frozen=True)
class WarningRecorded:
    warning_message: warnings.WarningMessage
    when: str
    nodeid: str
    location: tuple[str, int, str] | None


def describe_exit(code: int | None) -> str:
    """How a worker's process ended, in words: ``exit code 1``, ``killed by signal
    SIGSEGV``.  The one wording of every crash message and writer."""
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def outcome_of(reports: Sequence[pytest.TestReport]) -> str:
    """One word for a test's reports, as pytest's summary would count them.

    ``error`` for a failure outside the call phase, ``xfailed``/``xpassed`` for
    expected failures, else the call's outcome (``passed``/``failed``/``skipped``).
    """
    result = "passed"
    for report in reports:
        wasxfail = hasattr(report, "wasxfail")
        if report.when == "call":
            if report.skipped and wasxfail:
                result = "xfailed"
            elif report.passed and wasxfail:
                result = "xpassed"
            else:
                result = report.outcome
        elif report.failed:
            return "error" if result == "passed" else result
        elif report.skipped:
            result = "xfailed" if wasxfail else "skipped"
    return result


def duration_of(reports: Sequence[pytest.TestReport]) -> float:
    """Setup + call + teardown, in seconds."""
    return sum(getattr(r, "duration", 0.0) or 0.0 for r in reports)


def deciding_report(reports: Sequence[pytest.TestReport]) -> pytest.TestReport | None:
    """The report that decided a failure, error or skip (None for a clean pass)."""
    return next((r for r in reports if r.failed), None) or next(
        (r for r in reports if r.skipped), None
    )


#: ``TestFinished.origin`` of tests that never ran: the controller made their reports.
NOT_RUN_ORIGINS = frozenset({"not-run", "lost"})

#: Outcomes that count against a run (and that ``--retries`` retries).
FAILING_OUTCOMES = frozenset({"failed", "error"})


@dataclass(frozen=True)
class Attempt:
    """An earlier run of a test that failed and was retried (``--retries``)."""

    worker_id: str
    reports: tuple[pytest.TestReport, ...]

    @property
    def outcome(self) -> str:
        return outcome_of(self.reports)

    @property
    def duration(self) -> float:
        return duration_of(self.reports)

    @property
    def failing_report(self) -> pytest.TestReport | None:
        """The report that decided this attempt's failure."""
        return deciding_report(self.reports)


@dataclass(frozen=True)
class TestFinished:
    """A test's complete result: every report pytest produced for it, in order.

    With ``--retries`` this is the final attempt; ``attempts`` holds the earlier ones
    (each failed), oldest first.
    """

    __test__ = False  # not a test class, despite the name

    worker_id: str
    nodeid: str
    location: tuple[str, int | None, str]
    reports: tuple[pytest.TestReport, ...]
    warnings: tuple[WarningRecorded, ...] = ()
    #: "worker": reports a worker produced; "crash" / "not-run" / "lost": made by the
    #: controller for a test whose worker died under it, that could not be run at all, or
    #: that a worker was given and never reported (see the accounting invariant).
    origin: str = "worker"
    attempts: tuple[Attempt, ...] = ()

    @property
    def outcome(self) -> str:
        """The final attempt's outcome (see ``outcome_of``)."""
        return outcome_of(self.reports)

    @property
    def duration(self) -> float:
        """Setup + call + teardown of the final attempt, in seconds."""
        return duration_of(self.reports)

    @property
    def attempt_count(self) -> int:
        return len(self.attempts) + 1

    @property
    def flaky(self) -> bool:
        """It failed, was retried, and its final attempt did not fail."""
        return bool(self.attempts) and self.outcome not in FAILING_OUTCOMES

    @property
    def phase_durations(self) -> dict[str, float]:
        """``{"setup": s, "call": s, "teardown": s}`` for the phases that ran."""
        return {r.when: float(getattr(r, "duration", 0.0) or 0.0) for r in self.reports if r.when}

    @property
    def failing_report(self) -> pytest.TestReport | None:
        """The report that decided a failure, error or skip (None for a clean pass)."""
        return deciding_report(self.reports)


@dataclass(frozen=True)
class WorkerOutput:
    worker_id: str
    stream: str
    text: str


#: The option of each kind of limit (``TestLimitReached.kind``).
LIMIT_OPTIONS = {
    "timeout": "its time limit (--test-timeout)",
    "run-timeout": "--run-timeout",
    "memory": "--max-worker-memory",
    "pytest-timeout": "pytest-timeout's --timeout (its thread method ends the process)",
}


@dataclass(frozen=True)
class WorkerCrashed:
    worker_id: str
    exit_code: int | None
    nodeid: str | None
    stderr_tail: str
    #: It ended in the teardown after its last test (``nodeid``), which ends the
    #: session's fixtures: the test itself had finished.
    in_teardown: bool = False
    #: The controller ended it for ``nodeid``: ``TestLimitReached.kind`` (empty: it
    #: was not ended, it crashed).
    ended_by: str = ""
    #: What its transport adds (where it ran, a lost connection); "".
    note: str = ""

    @property
    def description(self) -> str:
        """``crashed while running <test> (exit code N)``: one wording for every writer."""
        if self.ended_by and self.nodeid is None:
            what = f"was ended: the run reached {LIMIT_OPTIONS.get(self.ended_by, self.ended_by)}"
        elif self.ended_by:
            limit = LIMIT_OPTIONS.get(self.ended_by, self.ended_by)
            what = f"was ended: {self.nodeid} reached {limit}"
        elif self.in_teardown:
            what = f"ended in the session teardown after {self.nodeid}"
        elif self.nodeid:
            what = f"crashed while running {self.nodeid}"
        else:
            what = "crashed between tests"
        code = "" if self.exit_code is None else f" ({describe_exit(self.exit_code)})"
        return what + code + (f"; {self.note}" if self.note else "")


@dataclass(frozen=True)
class RunFinished:
    """The last test is in (or will never come): the run loop is over."""

    tests_not_run: int
    #: Something other than a test's outcome went wrong: a crash, an internal error,
    #: a fatal error, an interrupt (the outcome record grades it).
    execution_failed: bool = False
    #: Why the run stopped early (None: it ran to its end).
    stop_reason: str | None = None
    #: An internal error in a worker ends the run with exit code 3.
    internal_error: bool = False
    #: ``(worker, node id, seconds running)`` of the tests running at a Ctrl-C.
    running_at_interrupt: tuple[tuple[str, str, float], ...] = ()
    finished_at: float = field(default_factory=time.time)


def cut_short(session: pytest.Session, exitstatus: int) -> bool:
    """Whether a session ended before its tests did: ``-x``/``--maxfail``/stepwise, an
    interrupt, an internal or usage error (``SessionEnded.aborted``)."""
    return bool(session.shouldfail or session.shouldstop) or exitstatus in (
        pytest.ExitCode.INTERRUPTED,
        pytest.ExitCode.INTERNAL_ERROR,
        pytest.ExitCode.USAGE_ERROR,
    )


@dataclass(frozen=True)
class SessionEnded:
    """pytest's session is over: the exit code is known.  Report writers write now.

    ``outcome`` is the learning-outcome record when one was computed; ``aborted`` is
    true when the run was cut short (interrupt, ``-x``, ``--maxfail``, a fatal error)
    and some tests were not run.
    """

    exit_code: int
    aborted: bool
    outcome: LearningOutcome | None = None
    finished_at: float = field(default_factory=time.time)


RunEvent = (
    RunStarted
    | WorkerStarted
    | WorkerReady
    | WorkerFinished
    | RunPlanned
    | TestStarted
    | Tick
    | ShardSelected
    | TestLimitReached
    | TestSlow
    | ProcessLeaked
    | WorkerRecycled
    | RunNotice
    | InternalError
    | CollectionFinished
    | WarningRecorded
    | TestFinished
    | WorkerOutput
    | WorkerCrashed
    | RunFinished
    | SessionEnded
)


class Consumer(Protocol):
    def __call__(self, event: RunEvent) -> None: ...


def consumer_name(consumer: Callable[[RunEvent], None]) -> str:
    """How a consumer is named to the user: its ``description``, else its class."""
    return str(getattr(consumer, "description", None) or type(consumer).__name__)


class EventStream:
    """Publish/subscribe, synchronous and in order, on the controller's main thread.

    Consumers are isolated from each other and from the run: one that raises (a report
    file that cannot be written, a closed pipe under ``--report-tap -``) is reported
    once through ``on_failure`` and gets no more events; the others and the run go on.
    A consumer whose errors are pytest's own (``isolated = False``: the replay into
    pytest's hooks, where a plugin that raises is an INTERNALERROR serially too) lets
    them through.
    """

    def __init__(
        self,
        consumers: Sequence[Callable[[RunEvent], None]] = (),
        on_failure: Callable[[Callable[[RunEvent], None], Exception], None] | None = None,
    ) -> None:
        self._consumers: list[Callable[[RunEvent], None]] = list(consumers)
        self._on_failure = on_failure
        #: ``(consumer, error)`` of every consumer that failed and was dropped.
        self.failures: list[tuple[Callable[[RunEvent], None], Exception]] = []

    def subscribe(self, consumer: Callable[[RunEvent], None]) -> None:
        self._consumers.append(consumer)

    def publish(self, event: RunEvent) -> None:
        for consumer in list(self._consumers):
            if not getattr(consumer, "isolated", True):
                consumer(event)
                continue
            try:
                consumer(event)
            except Exception as exc:
                self._consumers.remove(consumer)
                self.failures.append((consumer, exc))
                if self._on_failure is not None:
                    self._on_failure(consumer, exc)
