"""The controller: runs in the main pytest process and turns worker messages into events.

It does not collect: workers do (each of the first workers its share of the files, see
``collection.py``), and their collections are merged into the canonical test list
(``canonical.py``).  It starts workers, feeds the scheduler's decisions to them, maps
their results to canonical tests and publishes one ``TestFinished`` per test on the
event stream.
Everything that can go wrong with a worker (a crash, an exhausted restart budget, a
different collection) ends as events or as the same exception a serial session raises,
so the exit code and summary are pytest's own.
"""

from __future__ import annotations

import enum
import os
import queue
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import TerminalRepr

from .._version import __version__
from ..cpus import usable_cpus
from ..errors import CollectionMismatchError, WorkerInternalError, WorkerStartError
from ..history.recording import (
    OutcomeRecorder,
)
from ..history.store import TestTiming, estimate_durations
from ..reporting import events
from ..reporting.replay import rebuild_warning, terminal_line
from ..scheduling import Assign, Decision, Drain, Scheduler, TestPlanInput, make_scheduler
from ..settings import Settings
from ..wire import protocol
from ..wire.reports import deserialize
from ..worker.collection import cross_file_reordering
from .canonical import CanonicalCollection, check_agrees, merge
from .forkserver import ForkServer
from .pool import (
    ChannelClosed,
    ForkServerLost,
    OutputLine,
    PoolEvent,
    Received,
    StartFailed,
    WorkerHandle,
    WorkerPool,
    WorkerState,
    read_excerpt,
)

#: How long the controller waits for an event before it looks at its workers again.
POLL_SECONDS = 0.1
#: How often the scheduler is told the time (it looks for stragglers then).
TICK_SECONDS = 0.1


class RunState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"


def crash_report(
    nodeid: str, location: tuple[str, int | None, str], message: str, stderr: str, when: str
) -> pytest.TestReport:
    sections = [("Captured stderr (worker)", stderr)] if stderr.strip() else []
    return pytest.TestReport(
        nodeid=nodeid,
        location=location,  # type: ignore[arg-type]
        keywords={},
        outcome="failed",
        longrepr=message,
        when=when,  # type: ignore[arg-type]
        sections=sections,
        duration=0.0,
        user_properties=[],
    )


def closing_report(nodeid: str, location: tuple[str, int | None, str]) -> pytest.TestReport:
    """A passed teardown, so that consumers that close a test on teardown do so."""
    return pytest.TestReport(
        nodeid=nodeid,
        location=location,  # type: ignore[arg-type]
        keywords={},
        outcome="passed",
        longrepr=None,
        when="teardown",
        duration=0.0,
        user_properties=[],
    )


class ParallelRun:
    """One parallel session: owns the pool, the scheduler and the canonical collection."""

    def __init__(
        self,
        config: pytest.Config,
        session: pytest.Session,
        settings: Settings,
        stream: events.EventStream,
        run_id: str,
        strategy: str,
        timings: Mapping[str, TestTiming],
        recorder: OutcomeRecorder,
        fork_server: ForkServer | None = None,
    ) -> None:
        self.strategy = strategy
        self.timings = timings
        self.recorder = recorder
        self.config = config
        self.session = session
        self.settings = settings
        self.stream = stream
        self.run_id = run_id
        assert settings.workers is not None
        self.planned = settings.workers.resolve()
        self.max_restarts = (
            settings.max_worker_restart
            if settings.max_worker_restart is not None
            else 4 * self.planned
        )
        self.state = RunState.STARTING
        self.pool = WorkerPool(self._make_setup, fork_server)
        self.scheduler: Scheduler | None = None
        self.nodeids: tuple[str, ...] = ()
        self.canonical: CanonicalCollection | None = None
        mode, _ = collection_mode(config, settings)
        #: A partial collection (``imports`` or ``split``): the first workers share the
        #: files, later ones collect nothing up front.
        self.split = mode != "full"
        #: ``imports``: every worker imports every test module, its share or not.
        self.import_all = mode == "imports"
        # The first wave collects: as many workers as CPUs, so that collection is not
        # slowed by more interpreters starting than there are CPUs.  Without history the
        # suite size is unknown until it is collected, so the others start after that (a
        # one-test run does not pay for 16 interpreters).  With history the size is known
        # and the others start at once, niced, collecting nothing up front: their start-up
        # takes only the CPU the collectors leave, and they join when collection is done.
        known = len(timings)
        cpus = usable_cpus()
        self.first_wave = min(self.planned, known, cpus) if known else min(self.planned, cpus)
        # Forked workers cost little to start, and forked after collection, at full
        # priority, they are ready about as soon as niced ones started before it.
        self.eager = 0 if fork_server else max(0, min(self.planned, known) - self.first_wave)
        #: Collections of the first wave by share index (split) or arrival (full), until
        #: all of them are in: no test starts before every first-wave worker agrees.
        self.shares: dict[int, protocol.Collected] = {}
        self.share_of: dict[str, tuple[int, int] | None] = {}
        self.waiting: list[str] = []
        self.reported: set[int] = set()
        self.drained: set[str] = set()
        self.running: set[str] = set()
        self.errors: dict[str, str] = {}
        self.restarts = 0
        self.target = self.planned
        self.collection_failed = False
        self.fatal: BaseException | None = None
        self.stop_reason: str | None = None
        self.not_run = 0
        self.retries = settings.retries
        #: Replacement worker -> the crashed worker it replaces.
        self.replaces: dict[str, str] = {}
        #: Workers started for retried tests after every other worker was drained.
        self.extra_workers = 0
        #: Workers to start after collection, in turn (see ``_start_in_turn``).
        self.to_start: deque[tuple[int, int] | None] = deque()
        self.starting: set[str] = set()
        self.cpus = cpus
        #: Earlier failed attempts of tests being retried, by canonical index.
        self.attempts: dict[int, list[events.Attempt]] = {}
        #: The reports so far of a worker's last test, sent before its teardown (which
        #: ends the session's fixtures), by canonical index.
        self.partial: dict[int, protocol.TestRecord] = {}
        #: Internal errors of workers (worker id, text), in the order they came: the run
        #: ends as a serial INTERNALERROR ends it (exit code 3).
        self.internal_errors: list[tuple[str, str]] = []
        #: The first ``pytest.exit`` of a worker: the run ends with it, as serially.
        self.exit_request: protocol.Exited | None = None
        #: ``(worker, node id, seconds running)`` of the tests running at a Ctrl-C.
        self.running_at_interrupt: list[tuple[str, str, float]] = []
        #: Collection shares whose worker ended before collecting, and how often.
        self.share_failures: dict[tuple[int, int] | None, int] = {}
        self.basetemp = self._basetemp()

    # ------------------------------------------------------------------ set-up

    def _basetemp(self) -> str:
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            return str(factory.getbasetemp())
        return self.pool.run_dir

    def _make_setup(self, worker_id: str, progress_path: str) -> protocol.WorkerSetup:
        return protocol.WorkerSetup(
            worker_id=worker_id,
            worker_count=self.planned,
            run_id=self.run_id,
            protocol_version=protocol.PROTOCOL_VERSION,
            package_version=__version__,
            args=[os.fspath(a) for a in self.config.invocation_params.args],
            option_dict={},
            invocation_dir=str(self.config.invocation_params.dir),
            sys_path=[p for p in sys.path if isinstance(p, str)],
            basetemp=str(Path(self.basetemp) / worker_id),
            progress_path=progress_path,
            capture_off=self.config.getoption("capture", None) == "no",
            share=self.share_of.get(worker_id),
            import_all=self.import_all,
            stop_on_failure=self.retries == 0,
            controller_pid=os.getpid(),
        )

    def _spawn(
        self, shares: list[tuple[int, int] | None], replaces: str | None = None, nice: int = 0
    ) -> list[str]:
        ids = [self.pool.next_worker_id() for _ in shares]
        self.share_of.update(zip(ids, shares, strict=False))
        if replaces is not None:
            self.replaces.update(dict.fromkeys(ids, replaces))
        self.pool.start(ids, nice=nice)
        return ids

    def _start_in_turn(self, shares: list[tuple[int, int] | None]) -> None:
        """Start workers after collection, at most one per CPU at a time: a worker's
        start-up is CPU-bound, so started all at once they would all be ready only when
        the last is, and started in turn the first are ready (and running tests) soon."""
        self.to_start.extend(shares)
        self._start_next()

    def _start_next(self) -> None:
        while self.to_start and len(self.starting) < self.cpus:
            unassigned = self.scheduler is None or bool(self.scheduler.unassigned)
            if self.fatal is not None or self.stop_reason is not None or not unassigned:
                self.to_start.clear()  # nothing left for them to do
                return
            self.starting.update(self._spawn([self.to_start.popleft()]))

    def _started(self, worker_id: str) -> None:
        """The worker is ready (or gone): the next one in turn may start."""
        if worker_id in self.starting:
            self.starting.discard(worker_id)
            self._start_next()

    def _first_wave_shares(self) -> list[tuple[int, int] | None]:
        if self.split:
            return [(k, self.first_wave) for k in range(self.first_wave)]
        return [(0, 1)] * self.first_wave

    # ------------------------------------------------------------------ main loop

    def execute(self) -> None:
        interrupted = False
        self.stream.publish(events.RunStarted(self.run_id, self.planned, self.strategy))
        try:
            self._spawn(self._first_wave_shares())
            if self.eager:
                self._spawn([None if self.split else (0, 1)] * self.eager, nice=EAGER_NICE)
            self.pool.stream_output(stdout=self.config.getoption("capture", None) == "no")
            next_tick = 0.0
            while self.pool.alive():
                self._handle(self._next_event())
                now = time.monotonic()
                if self.scheduler is not None and now >= next_tick:
                    next_tick = now + TICK_SECONDS
                    self._apply(self.scheduler.tick(now))
        except KeyboardInterrupt:
            interrupted = True
            self.recorder.execution_failed = True
            self.running_at_interrupt = self._running_tests()
            if self.stop_reason is None:
                self.stop_reason = "interrupted"
            raise
        finally:
            if interrupted:
                for handle in self.pool.alive():
                    self.pool.kill(handle.worker_id)
            self.pool.shutdown(timeout=0.5 if interrupted else 5.0)
            self._drain_inbox()
            self.state = RunState.FINISHED
            if not interrupted:
                self._account_for_every_test()
            self.not_run = len(self.nodeids) - len(self.reported)
            self.stream.publish(events.RunFinished(tests_not_run=self.not_run))
        self._raise_like_pytest()

    def _running_tests(self) -> list[tuple[str, str, float]]:
        """``(worker, node id, seconds running)`` of every test running now."""
        running = []
        now = time.time()
        for handle in self.pool.alive():
            index, started = handle.running_since()
            if 0 <= index < len(self.nodeids) and index not in self.reported:
                running.append((handle.worker_id, self.nodeids[index], max(0.0, now - started)))
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
                self._handle(event)

    def _raise_like_pytest(self) -> None:
        session = self.session
        if isinstance(self.fatal, pytest.UsageError):
            raise self.fatal
        if self.fatal is not None:
            message = str(self.fatal)
            for line in message.splitlines():
                terminal_line(self.config, line, red=True)
            raise session.Interrupted(message.splitlines()[0])
        if self.exit_request is not None:
            pytest.exit(self.exit_request.reason, self.exit_request.returncode)
        if self.collection_failed:
            count = session.testsfailed
            raise session.Interrupted(f"{count} error{'s' if count != 1 else ''} during collection")
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)

    # ------------------------------------------------------------------ events

    def _handle(self, event: PoolEvent | None) -> None:
        if event is None:
            return
        if isinstance(event, Received):
            if event.unresolved:
                self._warn_unresolved(event.worker_id, event.unresolved)
            self._on_message(self.pool.workers[event.worker_id], event.message)
        elif isinstance(event, OutputLine):
            self.stream.publish(events.WorkerOutput(event.worker_id, event.stream, event.text))
        elif isinstance(event, ChannelClosed):
            handle = self.pool.workers[event.worker_id]
            if handle.state is not WorkerState.FINISHED:
                self._worker_lost(handle)
        elif isinstance(event, ForkServerLost):
            terminal_line(
                self.config,
                "parallel_exec: the fork server ended during the run; its workers go on, "
                "their exit statuses are unknown, and new workers are spawned",
                yellow=True,
            )
        elif isinstance(event, StartFailed):
            handle = self.pool.workers[event.worker_id]
            self.errors[handle.worker_id] = event.error
            if handle.state not in (WorkerState.FINISHED, WorkerState.CRASHED):
                self._worker_lost(handle)

    def _on_message(self, handle: WorkerHandle, message: protocol.WorkerMessage) -> None:
        if handle.state is WorkerState.CRASHED:
            return
        if isinstance(message, protocol.Progress):
            self._on_progress(handle, message)
        elif isinstance(message, protocol.Collected):
            self._on_collected(handle, message)
        elif isinstance(message, protocol.Hello):
            handle.state = WorkerState.COLLECTING
            handle.pid = message.pid
            self.stream.publish(
                events.WorkerStarted(
                    handle.worker_id, message.pid, self.replaces.get(handle.worker_id)
                )
            )
        elif isinstance(message, protocol.SessionFinished):
            handle.state = WorkerState.FINISHED
            self.pool.release(handle.worker_id)
            self._merge_junit_properties(message.junit_properties)
            self.running.discard(handle.worker_id)
            if message.exitstatus == pytest.ExitCode.INTERNAL_ERROR and not any(
                w == handle.worker_id for w, _ in self.internal_errors
            ):
                stderr = read_excerpt(handle.stderr_path)
                self._internal_error(
                    handle.worker_id,
                    "the worker's session ended with an internal error (exit status 3)"
                    + (f"; its stderr:\n{stderr}" if stderr.strip() else ""),
                )
            self._check_nothing_left(handle.worker_id, message.exitstatus)
            self._started(handle.worker_id)
            self._ensure_capacity()
        elif isinstance(message, protocol.NotFound):
            ids = ", ".join(message.nodeids[:3])
            self._fail(
                CollectionMismatchError(
                    f"parallel_exec: {handle.worker_id} could not find {ids} after collecting "
                    "its file, which another worker collected; every worker must collect the "
                    "same tests (random or time-dependent parametrization?)"
                )
            )
        elif isinstance(message, protocol.Exited):
            if self.exit_request is None:
                self.exit_request = message
            self._stop_all(message.reason)
        elif isinstance(message, protocol.WorkerError):
            if message.kind == "usage" and not self.nodeids:
                self.fatal = pytest.UsageError(message.traceback)
                self._stop_all("usage error")
            elif message.kind == "usage":
                self._internal_error(handle.worker_id, f"UsageError: {message.traceback}")
            else:
                self._internal_error(handle.worker_id, message.traceback)

    def _internal_error(self, worker_id: str, text: str) -> None:
        """A worker's INTERNALERROR: shown (tagged with the worker) through pytest's own
        ``pytest_internalerror`` hook, as a serial run shows one; the run stops and ends
        with exit code 3.  The same error from another worker is named, not repeated."""
        self.errors[worker_id] = text
        same = next((w for w, t in self.internal_errors if t == text), None)
        self.internal_errors.append((worker_id, text))
        self.recorder.execution_failed = True
        if same is not None:
            terminal_line(
                self.config, f"INTERNALERROR> [{worker_id}] the same error as {same}", red=True
            )
        else:
            show_internal_error(self.config, worker_id, text)
        self._stop_all(f"internal error in {worker_id}")

    def _warn_unresolved(self, worker_id: str, classes: tuple[str, ...]) -> None:
        names = ", ".join(classes)
        self.stream.publish(
            rebuild_warning(
                protocol.SerializedWarning(
                    message=(
                        f"parallel_exec: {worker_id} sent values of classes the controller "
                        f"cannot import ({names}; defined in a test module?): they are shown "
                        "by their class name only"
                    ),
                    category_module="parallel_exec.errors",
                    category_name="ParallelExecWarning",
                    filename=__file__,
                    lineno=0,
                    line=None,
                    when="runtest",
                    nodeid="",
                    location=None,
                )
            )
        )

    def _check_nothing_left(self, worker_id: str, exitstatus: int) -> None:
        """A worker that ended its session must have reported every test it was given,
        unless the run was stopped (those are counted as not run)."""
        if self.scheduler is None or self.stop_reason is not None or self.fatal is not None:
            return
        left = [t for t in self.scheduler.pending(worker_id) if t not in self.reported]
        if not left:
            return
        handle = self.pool.workers[worker_id]
        why = (
            f"lost: worker {worker_id} ended its session (exit status {exitstatus}) "
            "without reporting this test"
        )
        stderr = read_excerpt(handle.stderr_path)
        for index in left:
            self._apply(self.scheduler.test_finished(worker_id, index, time.monotonic()))
            self._report_not_run(index, worker_id, why, stderr, origin="lost")

    def _account_for_every_test(self) -> None:
        """The accounting invariant: every collected test has exactly one result.  A run
        that was not stopped and still misses one reports it as lost (an error), so the
        exit code cannot be 0; a stopped run counts the rest as not run."""
        if self.stop_reason is not None or self.fatal is not None or not self.nodeids:
            return
        missing = [i for i in range(len(self.nodeids)) if i not in self.reported]
        for index in missing:
            holder = "-"
            if self.scheduler is not None:
                holder = next(
                    (w for w in self.pool.workers if index in self.scheduler.pending(w)), "-"
                )
            where = f"assigned to {holder}" if holder != "-" else "never assigned to a worker"
            self._report_not_run(
                index,
                holder,
                f"lost: the run ended without a result for this test ({where})",
                read_excerpt(self.pool.workers[holder].stderr_path)
                if holder in self.pool.workers
                else "",
                origin="lost",
            )

    def _report_not_run(
        self, index: int, worker_id: str, why: str, stderr: str, origin: str
    ) -> None:
        nodeid = self.nodeids[index]
        location = location_of(nodeid)
        self._publish_test(
            worker_id,
            index,
            (
                crash_report(nodeid, location, why, stderr, "setup"),
                closing_report(nodeid, location),
            ),
            origin=origin,
        )

    def _merge_junit_properties(self, properties: tuple[tuple[str, str], ...]) -> None:
        """Suite properties recorded in workers, once each (every worker runs the fixture)."""
        if not properties:
            return
        from _pytest import junitxml

        xml = self.config.stash.get(junitxml.xml_key, None)
        if xml is None:
            return
        for prop in properties:
            if prop not in xml.global_properties:
                xml.global_properties.append(prop)

    # ------------------------------------------------------------------ collection

    def _fail(self, error: BaseException) -> None:
        self.recorder.execution_failed = True
        if self.fatal is None:
            self.fatal = error
        self._stop_all("error")

    def _on_collected(self, handle: WorkerHandle, message: protocol.Collected) -> None:
        worker_id = handle.worker_id
        self._started(worker_id)
        if self.fatal is not None or self.stop_reason is not None:
            self.pool.send(worker_id, protocol.Stop(self.stop_reason or "stopping"))
            return
        try:
            if self.canonical is None and self.split and message.share is None:
                self.waiting.append(worker_id)  # started early, joins on adoption
                return
            if self.canonical is None:
                key = message.share[0] if self.split and message.share else len(self.shares)
                self.shares.setdefault(key, message)
                self.waiting.append(worker_id)
                if len(self.shares) < self.first_wave:
                    return
                initial = [self.shares[k] for k in sorted(self.shares)]
                if self.split:
                    canonical = merge(initial, split=True)
                else:
                    canonical = merge(initial[:1], split=False)
                    for other in initial[1:]:
                        check_agrees(canonical, initial[0].worker_id, other)
                self._adopt(canonical)
                if self.stop_reason is not None:
                    return
                joining, self.waiting = self.waiting, []
            else:
                check_agrees(self.canonical, self._first_worker(), message)
                joining = [worker_id]
        except CollectionMismatchError as exc:
            self._fail(exc)
            return
        for joiner in joining:
            self._join(joiner)

    def _join(self, worker_id: str) -> None:
        handle = self.pool.workers[worker_id]
        if handle.state is WorkerState.CRASHED:
            return
        if self.scheduler is None or len(self.running) >= self.target:
            self.pool.send(worker_id, protocol.Stop("not needed"))
            return
        handle.state = WorkerState.RUNNING
        self.running.add(worker_id)
        self._apply(self.scheduler.worker_joined(worker_id, time.monotonic()))

    def _adopt(self, canonical: CanonicalCollection) -> None:
        config, session = self.config, self.session
        self.canonical = canonical
        self.nodeids = canonical.nodeids
        reports = tuple(deserialize(config, dict(data)) for data in canonical.collect_reports)
        session.testscollected = len(self.nodeids)
        self.stream.publish(
            events.CollectionFinished(
                worker_id=self._first_worker(),
                nodeids=self.nodeids,
                collect_reports=reports,
                deselected=canonical.deselected,
                warnings=tuple(rebuild_warning(w) for w in canonical.warnings),
            )
        )
        self._report_collected(len(self.nodeids) + len(canonical.deselected))
        if canonical.collection_failed:
            self.collection_failed = True
            self.recorder.execution_failed = True
            self._stop_all("collection errors")
            return
        if not self.nodeids:
            self._stop_all("no tests collected")
            return
        self.state = RunState.RUNNING
        self.target = min(self.planned, len(self.nodeids))
        if self.target < self.planned:
            count = self.target
            terminal_line(
                self.config,
                f"parallel_exec: {count} test{'s' if count != 1 else ''}, "
                f"so {count} worker{'s' if count != 1 else ''} of {self.planned}",
            )
        alive = {h.worker_id for h in self.pool.alive()}
        owners = {f: w for f, w in canonical.owners.items() if w in alive}
        estimates = estimate_durations(self.nodeids, self.timings)
        known = {n: self.timings[n] for n in self.nodeids if n in self.timings}
        plan = TestPlanInput(
            nodeids=self.nodeids,
            test_files=canonical.test_files,
            groups=canonical.groups,
            owners=owners,
            estimates=[estimates[n] for n in self.nodeids],
            stdevs=[known[n].stdev if n in known else None for n in self.nodeids],
        )
        self.scheduler = make_scheduler(self.strategy, plan, self.target)
        self.recorder.predictions = {n: (t.mean, t.stdev) for n, t in known.items()}
        self.recorder.predicted_makespan = self.scheduler.predicted_makespan
        self.recorder.workers = self.target
        extra = self.target - len(self.pool.workers)
        if extra > 0:
            self._start_in_turn([(0, 1) if not self.split else None] * extra)

    def _report_collected(self, count: int) -> None:
        """pytest's own "collected N items / M deselected / K selected" line."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or not hasattr(reporter, "report_collect"):
            return
        reporter._numcollected = count
        reporter.report_collect(True)

    def _first_worker(self) -> str:
        shares = self.shares
        return shares[min(shares)].worker_id if shares else "the first worker"

    # ------------------------------------------------------------------ progress

    def _on_progress(self, handle: WorkerHandle, message: protocol.Progress) -> None:
        worker_id = handle.worker_id
        for warning in message.warnings:
            self.stream.publish(rebuild_warning(warning))
        scheduler = self.scheduler
        if scheduler is None:
            return  # it asks again when it is told the run goes on (or stops)
        now = time.monotonic()
        index_of = self.canonical.index if self.canonical is not None else {}
        # Finished tests (and retries) first: the scheduler must know what a worker still
        # holds before it decides what the worker's request for more work gets.
        finished: list[tuple[int, protocol.TestRecord, tuple[Any, ...]]] = []
        for record in message.tests:
            index = index_of[record.nodeid]
            if record.partial:  # the rest follows, or the worker's end (see _worker_lost)
                self.partial[index] = record
                continue
            self.partial.pop(index, None)
            self._apply(scheduler.test_finished(worker_id, index, now))
            if index in self.reported:
                continue
            reports = tuple(deserialize(self.config, data) for data in record.reports)
            if self._retried(worker_id, index, reports):
                continue
            finished.append((index, record, reports))
        # What it runs now: a test is timed from here (never from its assignment: a
        # worker may hold it, unable to start it), and an idle straggler is answered.
        running = index_of.get(message.running) if message.running is not None else None
        if running is not None:
            self._apply(scheduler.test_started(worker_id, running, now))
        else:
            self._apply(scheduler.worker_idle(worker_id, now))
        if message.want_more and self.stop_reason is None:
            self._apply(scheduler.work_requested(worker_id, now))
        for index, record, reports in finished:
            self._publish_test(
                worker_id,
                index,
                reports,
                tuple(rebuild_warning(w) for w in record.warnings),
                record.location,
            )

    def _retried(self, worker_id: str, index: int, reports: tuple[Any, ...]) -> bool:
        """A failed attempt with retries left runs again instead of being reported."""
        if (
            len(self.attempts.get(index, ())) >= self.retries
            or self.stop_reason is not None
            or self.scheduler is None
            or events.outcome_of(reports) not in events.FAILING_OUTCOMES
        ):
            return False
        self.attempts.setdefault(index, []).append(events.Attempt(worker_id, reports))
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
                reports=reports,
                warnings=warnings,
                origin=origin,
                attempts=tuple(self.attempts.pop(index, ())),
            )
        )
        session = self.session
        if (session.shouldfail or session.shouldstop) and self.stop_reason is None:
            self._stop_all(str(session.shouldfail or session.shouldstop))

    def _apply(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            if isinstance(decision, Assign):
                nodeids = tuple(self.nodeids[t] for t in decision.tests)
                self.pool.send(decision.worker, protocol.Assign(nodeids, decision.tests))
            elif isinstance(decision, Drain):
                self.drained.add(decision.worker)
                self.pool.send(decision.worker, protocol.Drain())

    def _stop_all(self, reason: str) -> None:
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        self.state = RunState.STOPPING
        if self.scheduler is not None:
            self.scheduler.stop()
        for handle in self.pool.alive():
            self.pool.send(handle.worker_id, protocol.Stop(reason))

    # ------------------------------------------------------------------ losses

    def _worker_lost(self, handle: WorkerHandle) -> None:
        worker_id = handle.worker_id
        handle.state = WorkerState.CRASHED
        self._started(worker_id)
        self.running.discard(worker_id)
        exit_code = self.pool.exit_code(worker_id)
        stderr = handle.stderr_since_test_start()
        detail = self.errors.get(worker_id, "")
        if exit_code is None and self.pool.exit_status_lost(worker_id):
            detail = (detail + "\n" if detail else "") + (
                "its exit status is unknown: the fork server that started it had ended"
            )
        crashed: int | None = None
        in_teardown = False
        if self.scheduler is not None:
            running = handle.running_index()
            if running in self.scheduler.pending(worker_id):
                crashed = running
                in_teardown = running in self.partial
                if running not in self.reported:
                    self._report_crashed_test(worker_id, running, exit_code, stderr, detail)
            self.scheduler.worker_lost(worker_id, crashed)
        self.stream.publish(
            events.WorkerCrashed(
                worker_id=worker_id,
                exit_code=exit_code,
                nodeid=self.nodeids[crashed] if crashed is not None else None,
                stderr_tail=stderr,
                in_teardown=in_teardown,
            )
        )
        if self.fatal is not None or self.stop_reason is not None:
            return
        if worker_id in self.waiting:
            self.waiting.remove(worker_id)
        share = self.share_of.get(worker_id)
        collected = any(c.worker_id == worker_id for c in self.shares.values())
        if self.canonical is None and share is not None and not collected:
            # Its share of the files was never collected: someone must collect it, once
            # more; a second worker that ends the same way would not be the last.
            failures = self.share_failures[share] = self.share_failures.get(share, 0) + 1
            if self.restarts < self.max_restarts and failures < MAX_COLLECTION_ATTEMPTS:
                self.restarts += 1
                self._spawn([share], replaces=worker_id)
            else:
                why = (
                    f"--max-worker-restart ({self.max_restarts}) is exhausted"
                    if failures < MAX_COLLECTION_ATTEMPTS
                    else f"so did the {failures - 1} worker(s) started before it for that share"
                )
                evidence = read_excerpt(handle.stderr_path)
                self._fail(
                    WorkerStartError(
                        f"parallel_exec: worker {worker_id} ended before it finished collecting "
                        f"({describe_exit(exit_code)}), and {why}\n{evidence}{detail}".rstrip()
                    )
                )
            return
        self._ensure_capacity(lost=worker_id)

    def _report_crashed_test(
        self, worker_id: str, index: int, exit_code: int | None, stderr: str, detail: str
    ) -> None:
        nodeid = self.nodeids[index]
        location = location_of(nodeid)
        partial = self.partial.pop(index, None)
        if partial is not None:
            # Its last test had run; the process ended in the teardown that ends the
            # session's fixtures: an error of that teardown, as pytest reports one.
            message = (
                f"worker {worker_id} ended during the teardown after {nodeid}, its last "
                f"test ({describe_exit(exit_code)}): the session's fixtures did not finish "
                "their teardown"
            )
            if detail:
                message += "\n" + detail
            reports = tuple(deserialize(self.config, dict(d)) for d in partial.reports)
            self._publish_test(
                worker_id,
                index,
                (*reports, crash_report(nodeid, location, message, stderr, "teardown")),
                location=partial.location,
                origin="crash",
            )
            return
        message = f"worker {worker_id} crashed while running {nodeid} ({describe_exit(exit_code)})"
        if detail:
            message += "\n" + detail
        self._publish_test(
            worker_id,
            index,
            (
                crash_report(nodeid, location, message, stderr, "call"),
                closing_report(nodeid, location),
            ),
            origin="crash",
        )

    def _ensure_capacity(self, lost: str | None = None) -> None:
        """Work is waiting and no live worker takes work: start one, or report what can no
        longer run.  After a crash (``lost``) that is a restart, within the budget; else
        (a retry queued after the other workers were drained) it is not."""
        if self.fatal is not None or self.stop_reason is not None:
            return
        if self.scheduler is not None and not self.scheduler.unassigned:
            return
        takers = [h for h in self.pool.alive() if h.worker_id not in self.drained]
        if takers:
            return
        share = None if self.split else (0, 1)
        if lost is None and self.extra_workers < MAX_EXTRA_WORKERS:
            self.extra_workers += 1
            self._spawn([share])
            return
        if self.restarts < self.max_restarts:
            self.restarts += 1
            self._spawn([share], replaces=lost)
            return
        if self.scheduler is not None:
            reason = (
                f"not run: workers crashed and --max-worker-restart ({self.max_restarts}) "
                "is exhausted"
            )
            for index in self.scheduler.unassigned:
                self._report_not_run(index, "-", reason, "", origin="not-run")
            self.scheduler.stop()


#: Options whose logic needs every test in one collection (which failed last time, which
#: are new, where a stepwise run stopped): with them every worker collects everything.
GLOBAL_COLLECTION_OPTIONS = ("lf", "failedfirst", "newfirst", "stepwise", "stepwise_skip")


#: Niceness of workers started before collection is done (history known, more workers
#: than CPUs): their start-up must not slow the collectors down.
EAGER_NICE = 10

#: Cap on workers started for retries (not crashes); a bound against a start/finish loop.
MAX_EXTRA_WORKERS = 16

#: How many workers may try to collect one share of the files before the run fails: an
#: error every fresh worker meets (a plugin failing at start-up) is not retried until
#: the restart budget runs out.
MAX_COLLECTION_ATTEMPTS = 2


def needs_full_collection(config: pytest.Config) -> bool:
    return any(config.getoption(name, False) for name in GLOBAL_COLLECTION_OPTIONS)


#: The flags of ``GLOBAL_COLLECTION_OPTIONS``, for the session header.
GLOBAL_COLLECTION_FLAGS = {
    "lf": "--lf",
    "failedfirst": "--ff",
    "newfirst": "--nf",
    "stepwise": "--sw",
    "stepwise_skip": "--sw-skip",
}


def collection_mode(config: pytest.Config, settings: Settings) -> tuple[str, str | None]:
    """The collection mode this run uses, and why it is not the one asked for (None: it
    is).  A partial collection (``imports``, ``split``) becomes ``full`` when an option or
    a plugin needs every test in one list to select or order them across files."""
    mode = settings.collection
    if mode == "full":
        return mode, None
    for name in GLOBAL_COLLECTION_OPTIONS:
        if config.getoption(name, False):
            return "full", f"{GLOBAL_COLLECTION_FLAGS.get(name, name)} works on the whole test list"
    plugin = cross_file_reordering(config)
    if plugin is not None:
        return "full", f"{plugin} reorders tests across files"
    return mode, None


def location_of(nodeid: str) -> tuple[str, int | None, str]:
    """A location for a test that never reported one (it crashed, or never ran)."""
    path, _, rest = nodeid.partition("::")
    return (path, None, rest.replace("::", ".") or path)


class _WorkerErrorRepr(TerminalRepr):
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)


def show_internal_error(config: pytest.Config, worker_id: str, text: str) -> None:
    """Call ``pytest_internalerror`` as a serial run does for its own internal error (the
    terminal prints ``INTERNALERROR>`` lines, ``--junitxml`` records it), with the
    worker's traceback, each line tagged with the worker's id."""
    tagged = "\n".join(f"[{worker_id}] {line}" for line in text.splitlines())
    try:
        raise WorkerInternalError(tagged)
    except WorkerInternalError:
        excinfo = pytest.ExceptionInfo[WorkerInternalError].from_current()
    config.hook.pytest_internalerror(excrepr=_WorkerErrorRepr(tagged), excinfo=excinfo)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        import signal

        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
