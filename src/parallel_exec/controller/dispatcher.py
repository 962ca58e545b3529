"""The dispatcher: one parallel run's main loop, which only routes.

Pool events come in (a worker's message, its end, its output); each goes to the unit
that decides about it — the launcher (which workers start), the collection gate (when
tests may run), the scheduler (who runs what), the retry book, crash attribution, the
run status (whether and why the run stops) — and the units' decisions go out as
protocol messages to workers and as events on the run's stream.  The dispatcher never
collects, never opens a worker's file and never writes to the terminal: consumers of
the stream do that.

It drives the pool through ``Pool`` (``pool.py``), so its tests use a fake pool.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .. import _pytest_compat
from .._version import __version__
from ..cpus import usable_cpus
from ..errors import CollectionMismatchError, VersionMismatchError, WorkerStartError
from ..history.store import TestTiming
from ..reporting import events
from ..reporting.events import describe_exit
from ..reporting.replay import rebuild_warning
from ..scheduling import Assign, Decision, Drain, Reclaim, Scheduler, make_scheduler
from ..settings import Limits, Shard
from ..sharding import nothing_to_run, select_shard
from ..wire import environment, protocol
from ..wire.reports import deserialize
from .canonical import CanonicalCollection
from .crashes import (
    CrashAttribution,
    location_of,
    lost_at_end_reason,
    lost_in_session_reason,
    not_run_reports,
    restarts_exhausted_reason,
)
from .gate import Adopted, Agreed, CollectionGate
from .guards import DumpStacks, Ending, Guard, GuardAction, Kill, Slow, Terminate
from .launcher import Launcher, RestartBudget
from .nodes import XdistNodes
from .phase import Phase, RunStatus
from .planning import plan_input
from .pool import (
    ChannelClosed,
    ForkServerLost,
    OutputLine,
    Pool,
    PoolEvent,
    Received,
    StartFailed,
    WorkerState,
)
from .retries import RetryBook

#: How long the dispatcher waits for an event before it looks at its workers again.
POLL_SECONDS = 0.1
#: How often the scheduler is told the time (it looks for stragglers then).
TICK_SECONDS = 0.1
#: How a worker's stderr says pytest-timeout's thread method ends it.
PYTEST_TIMEOUT_PREFIX = protocol.ENDED_BY_PYTEST_TIMEOUT.partition("Timeout (")[0]
#: How often workers' memory is sampled (``--max-worker-memory``).
MEMORY_SECONDS = 0.2


@dataclass(frozen=True)
class RunConfig:
    """What one run is asked to do, as plain data."""

    run_id: str
    #: ``-n``, resolved.
    workers: int
    strategy: str
    #: ``imports``, ``split`` or ``full`` (after ``collection_mode``).
    collection: str
    retries: int
    #: ``--max-worker-restart`` (None: 4 x workers).
    max_worker_restart: int | None
    #: The pool forks workers from a fork server.
    forked: bool
    #: ``-s``: workers' standard output is streamed too.
    capture_off: bool
    #: The environment workers start from (None: the controller's as it is then).
    environment: Mapping[str, str] | None = None
    #: The guards' options.
    limits: Limits = field(default_factory=Limits)
    #: ``@pytest.mark.timeout`` is ours to enforce (pytest-timeout is not installed).
    timeout_marker: bool = False
    #: ``--shard I/N`` (None: the whole suite) and ``--shard-run-id``.
    shard: Shard | None = None
    shard_run_id: str | None = None


class Dispatcher:
    def __init__(
        self,
        config: pytest.Config,
        session: pytest.Session,
        run: RunConfig,
        stream: events.EventStream,
        timings: Mapping[str, TestTiming],
        make_pool: Callable[[Callable[[str, str, str], protocol.WorkerSetup]], Pool],
        cpus: int | None = None,
        nodes: XdistNodes | None = None,
    ) -> None:
        self.config = config
        self.session = session
        self.run = run
        self.stream = stream
        self.timings = timings
        #: pytest-xdist's plugin contract (None: no plugin hooks called).
        self.nodes = nodes
        self.pool = make_pool(self._make_setup)
        self.status = RunStatus()
        split = run.collection != "full"
        limit = run.max_worker_restart
        self.launcher = Launcher(
            self.pool,
            planned=run.workers,
            cpus=cpus if cpus is not None else usable_cpus(),
            known_tests=len(timings),
            split=split,
            forked=run.forked,
            budget=RestartBudget(limit if limit is not None else 4 * run.workers),
        )
        self.gate = CollectionGate(self.launcher.first_wave, split)
        self.retries = RetryBook(run.retries)
        self.crashes = CrashAttribution()
        self.guard = Guard(
            limit=run.limits.test_timeout,
            grace=run.limits.timeout_grace,
            memory=run.limits.max_worker_memory,
            slow_after=run.limits.slow_after,
        )
        #: Workers the guards ended (what they write to stderr from then on is in the
        #: ended test's report).
        self.ending: set[str] = set()
        #: When ``--run-timeout`` ends the run (monotonic clock; None: never).
        self.deadline: float | None = None
        self._next_memory_sample = 0.0
        self.scheduler: Scheduler | None = None
        self.nodeids: tuple[str, ...] = ()
        self.index_of: dict[str, int] = {}
        #: Canonical indices of the tests published as finished.
        self.reported: set[int] = set()
        #: Canonical indices of the tests (attempts) published as started.
        self.started: set[int] = set()
        self.drained: set[str] = set()
        #: Workers taking part in the run (joined the scheduler, not ended).
        self.running: set[str] = set()
        #: How many workers the run uses: ``-n``, or fewer when there are fewer tests.
        self.target = run.workers
        #: Why a worker could not start or was ended (an undecodable message).
        self.errors: dict[str, str] = {}
        self.not_run = 0
        #: ``(worker, node id, seconds running)`` of the tests running at a Ctrl-C.
        self.running_at_interrupt: list[tuple[str, str, float]] = []
        self.import_all = run.collection == "imports"
        self.basetemp = _pytest_compat.basetemp(config) or self.pool.run_dir

    # ------------------------------------------------------------------ set-up

    def _make_setup(self, worker_id: str, progress_path: str, spec: str) -> protocol.WorkerSetup:
        """``spec``: where it runs, in execnet's words (``popen``, ``socket=HOST:PORT``)."""
        start = self.run.environment
        return protocol.WorkerSetup(
            worker_id=worker_id,
            worker_count=self.run.workers,
            run_id=self.run.run_id,
            protocol_version=protocol.PROTOCOL_VERSION,
            package_version=__version__,
            args=[os.fspath(a) for a in self.config.invocation_params.args],
            option_dict={},
            invocation_dir=str(self.config.invocation_params.dir),
            sys_path=[p for p in sys.path if isinstance(p, str)],
            basetemp=str(Path(self.basetemp) / worker_id),
            progress_path=progress_path,
            capture_off=self.run.capture_off,
            share=self.launcher.share_of.get(worker_id),
            import_all=self.import_all,
            stop_on_failure=self.run.retries == 0,
            controller_pid=os.getpid(),
            workerinput=self.nodes.configure(worker_id, spec) if self.nodes is not None else {},
            environment=dict(start) if start is not None else None,
            environment_changes=environment.changes(start, os.environ) if start is not None else {},
            leak_check=self.run.limits.leak_check,
            max_tests=self.run.limits.max_worker_tests or 0,
            memory_limit=self.run.limits.max_worker_memory or 0,
            timeout_marker=self.run.timeout_marker,
        )

    def _work_left(self) -> bool:
        """Whether a worker started now would have anything to do."""
        if self.status.stopped:
            return False
        return self.scheduler is None or bool(self.scheduler.unassigned)

    # ------------------------------------------------------------------ main loop

    def execute(self) -> None:
        """The run: start, route every event until no worker is left, end as pytest
        would (raising ``session.Failed`` / ``Interrupted``, a usage error, an exit)."""
        interrupted = False
        self.start()
        try:
            next_tick = next_shown = 0.0
            while self.pool.alive():
                self.handle(self._next_event())
                now = time.monotonic()
                if now >= next_shown:
                    next_shown = now + TICK_SECONDS
                    self.stream.publish(events.Tick())
                self._check_deadline(now)
                if self.scheduler is not None and now >= next_tick:
                    next_tick = now + TICK_SECONDS
                    self._apply(self.scheduler.tick(now))
                    self._guard(now)
        except KeyboardInterrupt:
            interrupted = True
            self.status.execution_failed = True
            self.running_at_interrupt = self._running_tests()
            self.status.stop("interrupted")
            raise
        finally:
            self.finish(interrupted)
        self.status.end(self.config, self.session)

    def start(self) -> None:
        self.stream.publish(events.RunStarted(self.run.run_id, self.run.workers, self.run.strategy))
        if self.run.limits.run_timeout:
            self.deadline = time.monotonic() + self.run.limits.run_timeout
        self.launcher.start_first()
        self.pool.stream_output(stdout=self.run.capture_off)

    def finish(self, interrupted: bool) -> None:
        """Every worker has ended (or the run was interrupted): shut the pool down and
        account for every test."""
        if interrupted:
            for handle in self.pool.alive():
                self.pool.kill(handle.worker_id)
        self.pool.shutdown(timeout=0.5 if interrupted else 5.0)
        self._drain_inbox()
        self.status.finished()
        if not interrupted:
            self._account_for_every_test()
        self.not_run = len(self.nodeids) - len(self.reported)
        self.stream.publish(
            events.RunFinished(
                tests_not_run=self.not_run,
                execution_failed=self.status.execution_failed,
                stop_reason=self.status.stop_reason,
                internal_error=bool(self.status.internal_errors),
                running_at_interrupt=tuple(self.running_at_interrupt),
            )
        )

    def _running_tests(self) -> list[tuple[str, str, float]]:
        """``(worker, node id, seconds running)`` of every test running now."""
        running = []
        now = time.time()
        for handle in self.pool.alive():
            entry = self.pool.progress(handle.worker_id)
            if 0 <= entry.test < len(self.nodeids) and entry.test not in self.reported:
                running.append(
                    (handle.worker_id, self.nodeids[entry.test], max(0.0, now - entry.started))
                )
        return running

    def _next_event(self) -> PoolEvent | None:
        try:
            return self.pool.inbox.get(timeout=POLL_SECONDS)
        except queue.Empty:
            return None

    def _drain_inbox(self) -> None:
        """Publish output that arrived after the last worker ended."""
        while True:
            try:
                event = self.pool.inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, OutputLine):
                self.handle(event)

    # ------------------------------------------------------------------ routing

    def handle(self, event: PoolEvent | None) -> None:
        if event is None:
            return
        if isinstance(event, Received):
            if event.unresolved:
                self._warn_unresolved(event.worker_id, event.unresolved)
            self._on_message(event.worker_id, event.message)
        elif isinstance(event, OutputLine):
            if event.stream == "stderr" and event.text.startswith(PYTEST_TIMEOUT_PREFIX):
                self.ending.add(event.worker_id)  # what follows is in its test's report
            if event.stream == "stderr" and event.worker_id in self.ending:
                return  # its stacks and captured output: the ended test's report has them
            self.stream.publish(events.WorkerOutput(event.worker_id, event.stream, event.text))
        elif isinstance(event, ChannelClosed):
            if self.pool.workers[event.worker_id].state is not WorkerState.FINISHED:
                self._worker_lost(event.worker_id)
        elif isinstance(event, ForkServerLost):
            self._notice(
                "parallel_exec: the fork server ended during the run; its workers go on, "
                "their exit statuses are unknown, and new workers are spawned",
                "warning",
            )
        elif isinstance(event, StartFailed):
            self.errors[event.worker_id] = event.error
            if self.pool.workers[event.worker_id].state not in (
                WorkerState.FINISHED,
                WorkerState.CRASHED,
            ):
                self._worker_lost(event.worker_id)

    def _on_message(self, worker_id: str, message: protocol.WorkerMessage) -> None:
        handle = self.pool.workers[worker_id]
        if handle.state is WorkerState.CRASHED:
            return
        if isinstance(message, protocol.Progress):
            self._on_progress(worker_id, message)
        elif isinstance(message, protocol.Released):
            if self.scheduler is not None:
                self._apply(self.scheduler.tests_released(worker_id, message.indices))
        elif isinstance(message, protocol.Collected):
            self._on_collected(worker_id, message)
        elif isinstance(message, protocol.Hello):
            self._on_hello(worker_id, message)
        elif isinstance(message, protocol.SessionFinished):
            self._on_session_finished(worker_id, message)
        elif isinstance(message, protocol.NotFound):
            ids = ", ".join(message.nodeids[:3])
            self._fail(
                CollectionMismatchError(
                    f"parallel_exec: {worker_id} could not find {ids} after collecting "
                    "its file, which another worker collected; every worker must collect the "
                    "same tests (random or time-dependent parametrization?)"
                )
            )
        elif isinstance(message, protocol.Exited):
            if self.status.exit_requested(message):
                self._stop_workers(message.reason)
        elif isinstance(message, protocol.WorkerError):
            if message.kind == "usage" and not self.nodeids:
                self.status.fatal = pytest.UsageError(message.traceback)
                self._stop("usage error")
            elif message.kind == "usage":
                self._internal_error(worker_id, f"UsageError: {message.traceback}")
            else:
                self._internal_error(worker_id, message.traceback)

    def _on_hello(self, worker_id: str, message: protocol.Hello) -> None:
        transport = self.pool.workers[worker_id].transport
        python = transport.python if transport is not None else sys.version.split()[0]
        mismatch = protocol.handshake_mismatch(message, python, __version__)
        if mismatch is not None:
            self.pool.kill(worker_id)
            self._fail(
                VersionMismatchError(
                    f"parallel_exec: worker {worker_id} does not run what the controller "
                    f"runs ({mismatch}); the controller and its workers must use the same "
                    "interpreter and the same installation of parallel_exec"
                )
            )
            return
        handle = self.pool.workers[worker_id]
        if handle.state is WorkerState.STARTING:  # not if it was told to stop already
            handle.state = WorkerState.COLLECTING
        handle.pid = message.pid
        self.stream.publish(
            events.WorkerStarted(
                worker_id,
                message.pid,
                self.launcher.replaces.get(worker_id),
                platform=message.platform,
                version_info=message.version_info,
                executable=message.executable,
                cwd=message.cwd,
            )
        )

    def _on_session_finished(self, worker_id: str, message: protocol.SessionFinished) -> None:
        self.pool.workers[worker_id].state = WorkerState.FINISHED
        self.pool.release(worker_id)
        self.running.discard(worker_id)
        self.stream.publish(
            events.WorkerFinished(
                worker_id, message.exitstatus, message.workeroutput, message.junit_properties
            )
        )
        if message.exitstatus == pytest.ExitCode.INTERNAL_ERROR and not any(
            w == worker_id for w, _ in self.status.internal_errors
        ):
            stderr = self.pool.stderr_excerpt(worker_id)
            self._internal_error(
                worker_id,
                "the worker's session ended with an internal error (exit status 3)"
                + (f"; its stderr:\n{stderr}" if stderr.strip() else ""),
            )
        self._check_nothing_left(worker_id, message.exitstatus)
        if self.scheduler is not None:
            # A Release that reached it after its session ended has no answer.
            self._apply(self.scheduler.tests_released(worker_id, ()))
        self.launcher.settled(worker_id, self._work_left)
        self._ensure_capacity()

    # ------------------------------------------------------------------ stopping

    def _notice(self, text: str, level: str = "info") -> None:
        self.stream.publish(events.RunNotice(text, level))

    def _stop(self, reason: str) -> None:
        if self.status.stop(reason):
            self._stop_workers(reason)

    def _stop_workers(self, reason: str) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        for handle in self.pool.alive():
            self._send_stop(handle.worker_id, reason)

    def _send_stop(self, worker_id: str, reason: str) -> None:
        """Tell a worker to finish the test it runs and end; it takes no more work."""
        if self.pool.send(worker_id, protocol.Stop(reason)):
            self.pool.workers[worker_id].state = WorkerState.STOPPING

    def _fail(self, error: BaseException) -> None:
        if self.status.fail(error):
            self._stop_workers("error")

    def _internal_error(self, worker_id: str, text: str) -> None:
        """A worker's INTERNALERROR: shown through pytest's own hook (by the replay),
        tagged with the worker; the run stops and ends with exit code 3.  The same
        error from another worker is named, not repeated."""
        self.errors[worker_id] = text
        same = next((w for w, t in self.status.internal_errors if t == text), None)
        self.status.internal_errors.append((worker_id, text))
        self.status.execution_failed = True
        self.stream.publish(events.InternalError(worker_id, text, same))
        self._stop(f"internal error in {worker_id}")

    def _warn_unresolved(self, worker_id: str, classes: tuple[str, ...]) -> None:
        names = ", ".join(classes)
        self.stream.publish(
            rebuild_warning(
                protocol.SerializedWarning.ours(
                    f"parallel_exec: {worker_id} sent values of classes the controller "
                    f"cannot import ({names}; defined in a test module?): they are shown "
                    "by their class name only",
                    filename=__file__,
                )
            )
        )

    # ------------------------------------------------------------------ accounting

    def _check_nothing_left(self, worker_id: str, exitstatus: int) -> None:
        """A worker that ended its session must have reported every test it was given,
        unless the run was stopped (those are counted as not run)."""
        if self.scheduler is None or self.status.stopped:
            return
        left = [t for t in self.scheduler.pending(worker_id) if t not in self.reported]
        if not left:
            return
        why = lost_in_session_reason(worker_id, exitstatus)
        stderr = self.pool.stderr_excerpt(worker_id)
        for index in left:
            self._apply(self.scheduler.test_finished(worker_id, index, time.monotonic()))
            self._publish_not_run(index, worker_id, why, stderr, origin="lost")

    def _account_for_every_test(self) -> None:
        """The accounting invariant: every collected test has exactly one result.  A run
        that was not stopped and still misses one reports it as lost (an error), so the
        exit code cannot be 0; a stopped run counts the rest as not run."""
        if not self.nodeids or (self.status.stopped and not self.status.deadline):
            return
        for index in range(len(self.nodeids)):
            if index in self.reported:
                continue
            holder = None
            if self.scheduler is not None:
                holder = next(
                    (w for w in self.pool.workers if index in self.scheduler.pending(w)), None
                )
            if self.status.deadline:
                # --run-timeout: every test that did not run says why, in every report.
                why = f"not run: {self.status.stop_reason}"
                self._publish_not_run(index, holder or "-", why, "", origin="not-run")
                continue
            stderr = self.pool.stderr_excerpt(holder) if holder is not None else ""
            self._publish_not_run(
                index, holder or "-", lost_at_end_reason(holder), stderr, origin="lost"
            )

    def _publish_not_run(
        self, index: int, worker_id: str, why: str, stderr: str, origin: str
    ) -> None:
        nodeid = self.nodeids[index]
        self._publish_test(worker_id, index, not_run_reports(nodeid, why, stderr), origin=origin)

    # ------------------------------------------------------------------ collection

    def _on_collected(self, worker_id: str, message: protocol.Collected) -> None:
        self.launcher.settled(worker_id, self._work_left)
        if self.status.stopped:
            self._send_stop(worker_id, self.status.stop_reason or "stopping")
            return
        try:
            verdict = self.gate.collected(message)
        except CollectionMismatchError as exc:
            self._fail(exc)
            return
        if isinstance(verdict, Adopted):
            self._adopt(verdict)
            if self.status.stopped:
                return
            joining: tuple[str, ...] = verdict.joining
        elif isinstance(verdict, Agreed):
            joining = (verdict.worker_id,)
        else:
            return
        for joiner in joining:
            self._join(joiner)

    def _join(self, worker_id: str) -> None:
        handle = self.pool.workers[worker_id]
        if handle.state is WorkerState.CRASHED:
            return
        if self.scheduler is None or not self.status.takes_work or len(self.running) >= self.target:
            self._send_stop(worker_id, "not needed")
            return
        handle.state = WorkerState.RUNNING
        self.running.add(worker_id)
        self.stream.publish(events.WorkerReady(worker_id))
        self._apply(self.scheduler.worker_joined(worker_id, time.monotonic()))

    def _adopt(self, verdict: Adopted) -> None:
        canonical = verdict.canonical
        suite_tests = len(canonical.nodeids)
        if self.run.shard is not None and not canonical.collection_failed:
            canonical = self._select_shard(canonical, self.run.shard)
        self.nodeids = canonical.nodeids
        self.index_of = canonical.index
        reports = tuple(deserialize(self.config, dict(data)) for data in canonical.collect_reports)
        self.session.testscollected = len(self.nodeids)
        self.stream.publish(
            events.CollectionFinished(
                worker_id=self.gate.first_worker(),
                nodeids=self.nodeids,
                collect_reports=reports,
                deselected=canonical.deselected,
                warnings=tuple(rebuild_warning(w) for w in canonical.warnings),
            )
        )
        _pytest_compat.report_collected(self.config, len(self.nodeids) + len(canonical.deselected))
        if canonical.collection_failed:
            self.status.collection_failed = True
            self.status.execution_failed = True
            self._stop("collection errors")
            return
        if not self.nodeids and self.run.shard is not None and suite_tests:
            # Not an error: a shard of a matrix wider than the suite's groups.
            self.session.testscollected = suite_tests
            self._stop("nothing to run in this shard")
            return
        if not self.nodeids:
            self._stop("no tests collected")
            return
        self.status.adopted()
        self.target = min(self.run.workers, len(self.nodeids))
        if self.target < self.run.workers:
            count = self.target
            self._notice(
                f"parallel_exec: {count} test{'s' if count != 1 else ''}, "
                f"so {count} worker{'s' if count != 1 else ''} of {self.run.workers}"
            )
        alive = {h.worker_id for h in self.pool.alive()}
        plan, predictions = plan_input(canonical, self.timings, alive)
        self.scheduler = make_scheduler(self.run.strategy, plan, self.target)
        self.stream.publish(
            events.RunPlanned(
                strategy=self.run.strategy,
                workers=self.target,
                tests=len(self.nodeids),
                predictions=predictions,
                predicted_makespan=self.scheduler.predicted_makespan,
                plan=tuple(tuple(self.nodeids[t] for t in lane) for lane in self.scheduler.plan),
            )
        )
        extra = self.target - len(self.pool.workers)
        if extra > 0:
            self.launcher.start_in_turn(extra, self._work_left)

    def _select_shard(self, canonical: CanonicalCollection, shard: Shard) -> CanonicalCollection:
        """``--shard I/N``: the same plan on every shard (see ``scheduling/shards.py``);
        this run keeps its own tests and deselects the others'."""
        selected = select_shard(
            canonical.nodeids,
            canonical.groups,
            self.timings,
            shard,
            self.run.strategy,
            self.run.shard_run_id,
        )
        self.stream.publish(selected)
        if not selected.positions and canonical.nodeids:
            self._notice(nothing_to_run(selected), "warning")
        return canonical.keep(selected.positions)

    # ------------------------------------------------------------------ progress

    def _on_progress(self, worker_id: str, message: protocol.Progress) -> None:
        for warning in message.warnings:
            self.stream.publish(rebuild_warning(warning))
        scheduler = self.scheduler
        if scheduler is None:
            return  # it asks again when it is told the run goes on (or stops)
        now = time.monotonic()
        # Finished tests (and retries) first: the scheduler must know what a worker still
        # holds before it decides what the worker's request for more work gets.
        finished = self._take_finished(worker_id, message.tests, now)
        # What it runs now: a test is timed from here (never from its assignment: a
        # worker may hold it, unable to start it), and an idle straggler is answered.
        running = self.index_of.get(message.running) if message.running is not None else None
        if running is not None:
            self._apply(scheduler.test_started(worker_id, running, now))
        else:
            self._apply(scheduler.worker_idle(worker_id, now))
        if message.want_more and self.status.takes_work:
            self._apply(scheduler.work_requested(worker_id, now))
        self._publish_finished(worker_id, finished)
        if running is not None and running not in self.reported:
            self._test_started(worker_id, running, message.running_since)
        self._publish_leaks(worker_id, message.tests)
        if message.retiring:
            self._retire(worker_id, message.retiring)

    def _take_finished(
        self, worker_id: str, records: tuple[protocol.TestRecord, ...], now: float
    ) -> list[tuple[int, protocol.TestRecord, tuple[Any, ...]]]:
        """The scheduler learns the tests finished; those to publish (not retried, not
        published before) are returned, with their reports."""
        assert self.scheduler is not None
        finished: list[tuple[int, protocol.TestRecord, tuple[Any, ...]]] = []
        for record in records:
            index = self.index_of[record.nodeid]
            self._test_started(worker_id, index, record.started_at)
            if record.partial:  # the rest follows, or the worker's end (see _worker_lost)
                self.crashes.partial(index, record)
                continue
            self.crashes.finished(index)
            self._apply(self.scheduler.test_finished(worker_id, index, now))
            if index in self.reported:
                continue
            reports = tuple(deserialize(self.config, data) for data in record.reports)
            if self._retried(worker_id, index, reports):
                continue
            finished.append((index, record, reports))
        return finished

    def _publish_finished(
        self, worker_id: str, finished: list[tuple[int, protocol.TestRecord, tuple[Any, ...]]]
    ) -> None:
        for index, record, reports in finished:
            self._publish_test(
                worker_id,
                index,
                reports,
                tuple(rebuild_warning(w) for w in record.warnings),
                record.location,
            )

    def _publish_leaks(self, worker_id: str, records: tuple[protocol.TestRecord, ...]) -> None:
        for record in records:
            for pid, command in record.leaked:
                self.stream.publish(events.ProcessLeaked(worker_id, record.nodeid, pid, command))

    def _recover_unsent(self, worker_id: str, payloads: tuple[bytes, ...]) -> None:
        """The tests a worker finished and had not sent when it died, from its results
        journal: reported as they ran (not run again elsewhere)."""
        records: list[protocol.TestRecord] = []
        for payload in payloads:
            try:
                message, unresolved = protocol.decode_tolerant(payload)
            except Exception:
                continue  # cut short as it died: the test is attributed as usual
            if isinstance(message, protocol.Progress):
                if unresolved:
                    self._warn_unresolved(worker_id, unresolved)
                records.extend(r for r in message.tests if r.nodeid in self.index_of)
        if records and self.scheduler is not None:
            unsent = tuple(records)
            self._publish_finished(
                worker_id, self._take_finished(worker_id, unsent, time.monotonic())
            )
            self._publish_leaks(worker_id, unsent)

    def _test_started(self, worker_id: str, index: int, started_at: float) -> None:
        if index not in self.started:
            self.started.add(index)
            self.stream.publish(events.TestStarted(worker_id, self.nodeids[index], started_at))

    def _retried(self, worker_id: str, index: int, reports: tuple[Any, ...]) -> bool:
        """A failed attempt with retries left runs again instead of being reported."""
        if not self.status.takes_work or self.scheduler is None:
            return False
        if not self.retries.retry(index, worker_id, reports):
            return False
        self.started.discard(index)  # the next attempt starts anew
        self._apply(self.scheduler.retry(index, worker_id))
        self._ensure_capacity()  # nobody left to take it: start a worker
        return True

    def _publish_test(
        self,
        worker_id: str,
        index: int,
        reports: tuple[Any, ...],
        warnings: tuple[events.WarningRecorded, ...] = (),
        location: tuple[str, int | None, str] | None = None,
        origin: str = "worker",
    ) -> None:
        self.reported.add(index)
        nodeid = self.nodeids[index]
        self.stream.publish(
            events.TestFinished(
                worker_id=worker_id,
                nodeid=nodeid,
                location=location or location_of(nodeid),
                reports=self.retries.carried(index) + tuple(reports),
                warnings=warnings,
                origin=origin,
                attempts=self.retries.earlier(index),
            )
        )
        session = self.session
        if session.shouldfail or session.shouldstop:
            self._stop(str(session.shouldfail or session.shouldstop))

    def _apply(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            if isinstance(decision, Assign):
                nodeids = tuple(self.nodeids[t] for t in decision.tests)
                self.pool.send(decision.worker, protocol.Assign(nodeids, decision.tests))
            elif isinstance(decision, Drain):
                self.drained.add(decision.worker)
                self.pool.send(decision.worker, protocol.Drain())
            elif isinstance(decision, Reclaim) and not self.pool.send(
                decision.worker, protocol.Release(decision.tests)
            ):
                assert self.scheduler is not None  # only a scheduler decides
                self._apply(self.scheduler.tests_released(decision.worker, ()))

    # ------------------------------------------------------------------ losses

    def _worker_lost(self, worker_id: str) -> None:
        handle = self.pool.workers[worker_id]
        handle.state = WorkerState.CRASHED
        self.launcher.settled(worker_id, self._work_left)
        self.running.discard(worker_id)
        evidence = self.pool.crash_evidence(worker_id)
        self._recover_unsent(worker_id, evidence.finished)
        detail = self.crashes.detail(worker_id, evidence, self.errors.get(worker_id, ""))
        crashed: int | None = None
        in_teardown = rerun = False
        ended = self.guard.ended(worker_id)
        ended_for, reason = (ended.index, ended.reason) if ended is not None else (None, None)
        plugin_ended = ""  # a plugin ended it for its test (pytest-timeout)
        if self.scheduler is not None:
            running = evidence.running
            if running in self.scheduler.pending(worker_id):
                crashed = running
                in_teardown = self.crashes.in_teardown(running)
                if evidence.started:  # it died before saying it had started
                    self._test_started(worker_id, running, evidence.started)
                if running not in self.reported and running == ended_for and reason is not None:
                    seconds = max(0.0, time.time() - ended.since) if ended else 0.0
                    result = self.crashes.ended(
                        worker_id, running, self.nodeids[running], evidence, reason, seconds
                    )
                    self._publish_test(
                        worker_id, running, result.reports, location=result.location, origin="crash"
                    )
                elif running not in self.reported:
                    result = self.crashes.attribute(
                        worker_id,
                        running,
                        self.nodeids[running],
                        evidence,
                        detail,
                        lambda data: deserialize(self.config, data),
                    )
                    plugin_ended = result.ended_by
                    if self._rerun_after_crash(running, result.reports, in_teardown):
                        rerun = True  # back among the tests to run
                    else:
                        self._publish_test(
                            worker_id,
                            running,
                            result.reports,
                            location=result.location,
                            origin="crash",
                        )
            self._apply(self.scheduler.worker_lost(worker_id, None if rerun else crashed))
        self.stream.publish(
            events.WorkerCrashed(
                worker_id=worker_id,
                exit_code=evidence.exit_code,
                nodeid=self.nodeids[crashed] if crashed is not None else None,
                stderr_tail=evidence.stderr_since_test,
                in_teardown=in_teardown,
                ended_by=(
                    reason.kind
                    if reason is not None and crashed == ended_for
                    else plugin_ended or ("run-timeout" if self.status.deadline else "")
                ),
                note=evidence.note,
            )
        )
        if self.status.stopped:
            return
        self.gate.forget(worker_id)
        if (
            self.status.phase is Phase.STARTING
            and self.launcher.share_of.get(worker_id) is not None
            and not self.gate.has_collected(worker_id)
        ):
            # Its share of the files was never collected: someone must collect it.
            why = self.launcher.replace_collector(worker_id)
            if why is not None:
                self._fail(
                    WorkerStartError(
                        f"parallel_exec: worker {worker_id} ended before it finished collecting "
                        f"({describe_exit(evidence.exit_code)}), and {why}\n"
                        f"{evidence.stderr}{detail}".rstrip()
                    )
                )
            return
        if ended is not None or plugin_ended:
            # Ended for a test's limit: the test failed, the worker did not crash.
            self._replace(worker_id)
        else:
            self._ensure_capacity(lost=worker_id)

    def _rerun_after_crash(self, index: int, reports: tuple[Any, ...], in_teardown: bool) -> bool:
        """``pytest_handlecrashitem``: a plugin (pytest-rerunfailures) may run the test
        again; its crash report, as the plugin left it, is published before the next
        attempt's.  Not for an end in the session teardown: the test had finished."""
        if self.nodes is None or in_teardown or not self.status.takes_work:
            return False
        if not self.nodes.crashed_in(self.nodeids[index], reports[0]):
            return False
        self.retries.carry(index, reports[:1])
        self.started.discard(index)  # the next attempt starts anew
        return True

    def _guard(self, now: float) -> None:
        """The guards: look at what each worker runs (its time, its memory, the run's
        deadline) and carry out the guard's decisions."""
        sample = self.run.limits.max_worker_memory is not None and now >= self._next_memory_sample
        if sample:
            self._next_memory_sample = now + MEMORY_SECONDS
        wall = time.time()
        for handle in self.pool.alive():
            worker_id = handle.worker_id
            entry = self.pool.progress(worker_id)
            index = entry.test
            if not 0 <= index < len(self.nodeids) or index in self.reported:
                index = -1
            actions = self.guard.check(
                worker_id, index, entry.started, wall, now, entry.limit, self._predicted(index)
            )
            if sample:
                rss = self.pool.memory(worker_id)
                actions += self.guard.sample_memory(worker_id, index, rss, now, entry.started)
            for action in actions:
                self._carry_out(action)

    def _check_deadline(self, now: float) -> None:
        """``--run-timeout``: when it passes, the run stops; the guard ends the tests that
        run (``_guard``).  Before the collection is adopted nothing runs a test, and a
        worker may be stuck collecting: every worker is killed."""
        if self.deadline is None or now < self.deadline:
            return
        self.deadline = None
        limit = self.run.limits.run_timeout or 0.0
        self.guard.deadline(limit)
        self.status.deadline_passed(limit)
        self._stop_workers(self.status.stop_reason or "")
        if self.scheduler is None:
            for handle in self.pool.alive():
                self.pool.kill(handle.worker_id)

    def _carry_out(self, action: GuardAction) -> None:
        worker_id = action.worker
        if isinstance(action, Ending):
            self.ending.add(worker_id)
            self.stream.publish(
                events.TestLimitReached(
                    worker_id, self.nodeids[action.index], action.reason.kind, action.reason.message
                )
            )
        elif isinstance(action, DumpStacks):
            signum = getattr(signal, protocol.STACKS_SIGNAL, None)
            if signum is not None:
                self.pool.signal(worker_id, signum)
        elif isinstance(action, Terminate):
            self.pool.signal(worker_id, signal.SIGTERM, group=True)
        elif isinstance(action, Kill):
            self.pool.kill(worker_id)
        elif isinstance(action, Slow):
            self.stream.publish(
                events.TestSlow(worker_id, self.nodeids[action.index], action.seconds)
            )

    def _predicted(self, index: int) -> float | None:
        if index < 0 or self.run.limits.slow_after is None:
            return None
        timing = self.timings.get(self.nodeids[index])
        return timing.mean if timing is not None else None

    def _retire(self, worker_id: str, reason: str) -> None:
        """The worker ends between two tests (``--max-worker-tests``, its memory): the
        tests it holds go back to the scheduler, and another worker replaces it."""
        handle = self.pool.workers[worker_id]
        if handle.state in (WorkerState.FINISHED, WorkerState.CRASHED):
            return
        handle.state = WorkerState.STOPPING
        self.running.discard(worker_id)
        if self.scheduler is not None:
            self._apply(self.scheduler.worker_lost(worker_id, None))
        self.stream.publish(events.WorkerRecycled(worker_id, reason))
        self._replace(worker_id)

    def _replace(self, worker_id: str) -> None:
        """A worker the controller ended, or that retired, is replaced outside
        ``--max-worker-restart`` while work is waiting (the others may not take it all)."""
        if self.status.stopped or self.scheduler is None or not self.scheduler.unassigned:
            return
        live = [
            h
            for h in self.pool.alive()
            if h.worker_id != worker_id
            and h.state is not WorkerState.STOPPING
            and h.worker_id not in self.drained
        ]
        if len(live) < self.target:
            self.launcher.replace(worker_id, counted=False)

    def _ensure_capacity(self, lost: str | None = None, counted: bool = True) -> None:
        """Work is waiting and no live worker takes work: start one, or report what can no
        longer run.  After a crash (``lost``) that is a restart, within the budget; else
        (a retry queued after the other workers were drained) it is not."""
        if self.status.stopped:
            return
        if self.scheduler is not None and not self.scheduler.unassigned:
            return
        takers = [
            h
            for h in self.pool.alive()
            if h.worker_id not in self.drained and h.state is not WorkerState.STOPPING
        ]
        if takers or self.launcher.replace(lost, counted):
            return
        if self.scheduler is not None:
            reason = restarts_exhausted_reason(self.launcher.budget.limit)
            for index in self.scheduler.unassigned:
                self._publish_not_run(index, "-", reason, "", origin="not-run")
            self.scheduler.stop()
