"""The history's two ends in a run: where the store lives, and the consumer that feeds it.

``OutcomeRecorder`` is a consumer of the run-event stream: it notes every finished test
(who ran it, how long it took, how it ended) and, when the run finishes, computes the
learning-outcome record, folds the durations into the timing history and writes
``--report-outcome`` (atomically: a temporary file, then a rename).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .._version import __version__
from ..errors import HistoryError, ParallelExecWarning
from ..files import write_atomically
from ..reporting import events
from .learning import LearningOutcome, RanTest, summarize
from .store import HistoryStore, TestResult, TestTiming

if TYPE_CHECKING:
    from ..settings import Settings


def cache_dir(config: pytest.Config) -> Path:
    """pytest's cache directory, resolved even when the cache plugin is disabled."""
    try:
        raw = str(config.getini("cache_dir"))
    except ValueError:  # -p no:cacheprovider: the ini key is not registered
        raw = str(_unregistered_ini_value(config, "cache_dir") or ".pytest_cache")
    path = Path(os.path.expanduser(os.path.expandvars(raw)))
    return path if path.is_absolute() else config.rootpath / path


def _unregistered_ini_value(config: pytest.Config, name: str) -> object:
    """The raw configuration value of ``name``, an ini key no plugin registered (so
    ``config.getini`` refuses it), or None.

    pytest has no public API for this.  pytest 9.0 and later keep the values in the
    private ``Config._inicfg`` (``ConfigValue`` objects, ``-o`` overrides merged in) and
    turn ``Config.inicfg`` into a proxy, which pytest 9.1 and later deprecate (a warning, an
    error in a suite with ``filterwarnings = error``).  pytest 8.x has only the public
    ``Config.inicfg``, a dict of plain values."""
    inicfg = getattr(config, "_inicfg", None)  # pytest >= 9.0
    if inicfg is None:  # pytest 8.x
        inicfg = getattr(config, "inicfg", None) or {}
    value = inicfg.get(name)
    return getattr(value, "value", value)


def history_path(config: pytest.Config, explicit: str | None) -> Path:
    if explicit:
        path = Path(os.path.expanduser(explicit))
        return path if path.is_absolute() else config.invocation_params.dir / path
    return cache_dir(config) / "parallel_exec" / "history.sqlite"


def open_history(config: pytest.Config, explicit: str | None) -> HistoryStore | None:
    """The store, or None (with one warning) when it cannot be used in this run.

    A store that cannot be written comes back read-only (with one warning): the run plans
    from it and ``OutcomeRecorder`` does not write it.  Every failure of the store is a
    ``HistoryError`` (an ``OSError`` at most from the file system around it).
    """
    path = history_path(config, explicit)

    def warn(message: str) -> None:
        config.issue_config_time_warning(ParallelExecWarning(f"parallel_exec: {message}"), 3)

    try:
        return HistoryStore.open(path, warn=warn)
    except (HistoryError, OSError) as exc:
        warn(f"the timing history {path} cannot be used in this run ({exc})")
        return None


def open_timings(
    config: pytest.Config, settings: Settings
) -> tuple[HistoryStore | None, dict[str, TestTiming]]:
    """The run's store (None: ``--no-history``, or unusable) and the timings it knows.
    A store whose timings cannot be read is closed, with one warning: the run goes on
    without history."""
    store = None if settings.no_history else open_history(config, settings.history)
    if store is None:
        return None, {}
    try:
        return store, store.timings()
    except HistoryError as exc:
        config.issue_config_time_warning(
            ParallelExecWarning(f"parallel_exec: the timing history is not used: {exc}"), 3
        )
        store.close()
        return None, {}


def report_warning(config: pytest.Config, warning: Warning) -> None:
    """Put a warning into pytest's warnings summary from outside any test.

    pytest only collects warnings raised inside the hooks it wraps; the history is
    written at the end of the run loop, outside them, so the warning is recorded
    through the same hook the warnings plugin uses.
    """
    message = warnings.WarningMessage(
        message=warning, category=type(warning), filename=__file__, lineno=0, line=""
    )
    config.hook.pytest_warning_recorded.call_historic(
        kwargs=dict(warning_message=message, when="runtest", nodeid="", location=None)
    )


def warn_consumer_failure(
    config: pytest.Config,
) -> Callable[[Callable[[events.RunEvent], None], Exception], None]:
    """``EventStream``'s ``on_failure``: a consumer that failed is named in pytest's
    warnings summary; the run goes on without it."""

    def on_failure(consumer: Callable[[events.RunEvent], None], error: Exception) -> None:
        name = events.consumer_name(consumer)
        if isinstance(error, BrokenPipeError):
            why = "its output was closed (a pipe whose reader ended)"
        else:
            why = f"{type(error).__name__}: {error}"
        report_warning(
            config,
            ParallelExecWarning(f"parallel_exec: the {name} stopped, the run went on: {why}"),
        )

    return on_failure


class OutcomeRecorder:
    """Consumer: remembers what ran; at the end grades the run and writes the history."""

    description = "timing history and learning record"

    def __init__(
        self, config: pytest.Config, store: HistoryStore | None, report_path: str | None
    ) -> None:
        self.config = config
        self.store = store
        self.report_path = report_path
        self.tests: list[RanTest] = []
        self.flaky: list[str] = []
        self.retries = 0
        self.worker_failures = 0
        self.not_run = 0
        #: What the guards did, by ``LearningOutcome`` field.
        self.guards: dict[str, int] = {}
        self._slow: set[str] = set()
        #: ``--shard``: the outcome record's shard fields (None: not sharded).
        self.shard: dict[str, Any] | None = None
        self.started = time.monotonic()
        self.last_result = self.started
        self.run: events.RunStarted | None = None
        self.outcome: LearningOutcome | None = None
        #: From ``RunPlanned``: the history's predictions, the plan, the workers used.
        self.predictions: Mapping[str, tuple[float, float]] = {}
        self.predicted_makespan: float | None = None
        self.workers = 0

    def __call__(self, event: events.RunEvent) -> None:
        if isinstance(event, events.RunStarted):
            self.run = event
            self.started = self.last_result = time.monotonic()
        elif isinstance(event, events.TestFinished):
            self.last_result = time.monotonic()
            self.retries += len(event.attempts)
            if event.flaky:
                self.flaky.append(event.nodeid)
            if event.origin in events.NOT_RUN_ORIGINS:
                self.not_run += 1  # reported as not run (exhausted restarts, --run-timeout)
            if event.origin == "worker" or event.duration > 0:  # a test ended by a guard too
                self.tests.append(
                    RanTest(
                        event.nodeid,
                        event.worker_id,
                        event.duration,
                        event.outcome,
                        tuple((a.worker_id, a.duration) for a in event.attempts),
                    )
                )
        elif isinstance(event, events.RunPlanned):
            self.predictions = event.predictions
            self.predicted_makespan = event.predicted_makespan
            self.workers = event.workers
        elif isinstance(event, events.WorkerCrashed) and not event.ended_by:
            self.worker_failures += 1  # a timeout is the test's failure, not the worker's
        elif isinstance(event, events.TestLimitReached):
            self._count("over_memory" if event.kind == "memory" else "timed_out")
        elif isinstance(event, events.TestSlow):
            if event.nodeid not in self._slow:
                self._slow.add(event.nodeid)
                self._count("slow_tests")
        elif isinstance(event, events.ShardSelected):
            self.shard = {
                "shard": event.label,
                "shard_run_id": event.run_id,
                "shard_plan": event.fingerprint,
                "shard_predicted_work": round(event.predicted, 6),
                "matrix_largest_predicted_work": round(event.largest, 6),
                "matrix_lower_bound": round(event.lower_bound, 6),
            }
        elif isinstance(event, events.WorkerRecycled):
            self._count("recycled_workers")
        elif isinstance(event, events.ProcessLeaked):
            self._count("leaked_processes")
        elif isinstance(event, events.RunFinished):
            self._finish(event)

    def _count(self, what: str) -> None:
        self.guards[what] = self.guards.get(what, 0) + 1

    def _finish(self, event: events.RunFinished) -> None:
        run = self.run
        if run is None:
            return
        self.outcome = summarize(
            version=__version__,
            run_id=run.run_id,
            strategy=run.strategy,
            workers=self.workers or run.workers,
            tests=self.tests,
            wall_time=self.last_result - self.started,
            not_run=event.tests_not_run + self.not_run,
            worker_failures=self.worker_failures,
            execution_failed=event.execution_failed,
            predictions=self.predictions,
            predicted_makespan=self.predicted_makespan,
            retries=self.retries,
            flaky_tests=self.flaky,
            guards=self.guards,
            shard=self.shard,
        )
        record = self.outcome.model_dump(mode="json")
        flaky = set(self.flaky)
        if self.store is not None and not self.store.read_only:  # read-only: warned at open
            try:
                self.store.record(
                    (
                        TestResult(t.nodeid, t.duration, t.outcome, t.nodeid in flaky)
                        for t in self.tests
                    ),
                    run=record,
                    run_id=run.run_id,
                )
            except HistoryError as exc:
                report_warning(self.config, ParallelExecWarning(f"parallel_exec: {exc}"))
        if self.report_path:
            path = Path(self.report_path)
            if not path.is_absolute():
                path = self.config.invocation_params.dir / path
            write_atomically(path, self.outcome.model_dump_json(indent=2) + "\n")

    def summary_lines(self, verbose: bool = False) -> list[str]:
        """The end-of-run figures in words a user can act on; ``verbose`` (``-v``) adds
        the graded record (makespan against its lower bound, stragglers, reward), which
        ``--report-outcome`` writes in full."""
        o = self.outcome
        if o is None or not o.tests_executed:
            return []
        lines = [
            f"parallel_exec: {o.workers} worker{'s' if o.workers != 1 else ''} "
            f"({o.strategy}), wall {o.wall_time:.2f}s for {o.sequential_estimate:.2f}s of tests: "
            f"speedup {o.speedup:.2f}x, efficiency {o.efficiency:.0%}"
        ]
        guards = guard_summary(o)
        if guards:
            lines.append(f"parallel_exec: {guards}")
        hint = self._hint()
        if hint:
            lines.append(f"parallel_exec: {hint}")
        if verbose:
            lines.append(
                f"parallel_exec: makespan {o.actual_makespan:.2f}s"
                + (f" (predicted {o.predicted_makespan:.2f}s)" if o.predicted_makespan else "")
                + f", lower bound {o.lower_bound:.2f}s"
                + (
                    f", actual/LB {o.actual_over_lower_bound:.2f}"
                    if o.actual_over_lower_bound
                    else ""
                )
                + f", balance {o.balance:.0%}, stragglers {o.stragglers}, reward {o.reward}"
            )
            for straggler in o.straggler_tests[:5]:
                lines.append(
                    f"parallel_exec:   straggler {straggler.nodeid} on {straggler.worker}: "
                    f"{straggler.actual:.2f}s (predicted {straggler.predicted:.2f}s)"
                )
        return lines

    def _hint(self) -> str | None:
        """What would make this run faster, when something clearly would."""
        o = self.outcome
        if o is None or not self.tests:
            return None
        longest = max(self.tests, key=lambda t: t.duration)
        share = o.sequential_estimate / max(1, o.workers)
        if longest.duration >= 1.0 and longest.duration >= share and o.efficiency < 0.9:
            return (
                f"1 test of {longest.duration:.1f}s bounds this run ({longest.nodeid}); "
                "split it to go faster"
            )
        if o.stragglers:
            count = o.stragglers
            return (
                f"{count} test{'s' if count != 1 else ''} ran much longer than the history "
                "predicted (-v names them)"
            )
        if o.efficiency < 0.5 and share < 1.0:
            return (
                "the tests are short: starting and collecting on each worker costs more "
                "than it saves; fewer workers (-n) may be as fast"
            )
        return None


def guard_summary(outcome: LearningOutcome) -> str | None:
    """What the guards did, in one line (None: nothing)."""

    def counted(count: int, one: str, many: str) -> str | None:
        return f"{count} {one if count == 1 else many}" if count else None

    parts = [
        counted(outcome.timed_out, "test timed out", "tests timed out"),
        counted(
            outcome.over_memory, "test over --max-worker-memory", "tests over --max-worker-memory"
        ),
        counted(outcome.slow_tests, "slow test", "slow tests"),
        counted(
            outcome.recycled_workers,
            "worker replaced between tests",
            "workers replaced between tests",
        ),
        counted(
            outcome.leaked_processes,
            "process left running by a test",
            "processes left running by tests",
        ),
    ]
    found = [p for p in parts if p]
    return ", ".join(found) if found else None
