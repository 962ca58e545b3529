"""``ControllerPlugin``: the pytest hooks of the main process in a parallel run.

It opens the timing history, chooses the strategy, builds the event stream and its
consumers, and hands ``pytest_runtestloop`` to a ``Dispatcher``; at the end it settles
the exit code and writes the summary lines.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from .. import _pytest_compat
from ..cpus import usable_cpus
from ..history.recording import OutcomeRecorder, open_timings, warn_consumer_failure
from ..plugin import rerunfailures_active
from ..reporting import events
from ..reporting.junit_order import JunitOrder
from ..reporting.replay import HookReplay
from ..reporting.writers import make_writers
from ..settings import Settings, remote_machines
from .collection_mode import collection_mode
from .dispatcher import Dispatcher, RunConfig
from .forkserver import ForkServer
from .nodes import XdistNodes
from .pool import WorkerPool
from .remote import connect_all

#: pytest-rerunfailures' exit code for ``--fail-on-flaky`` when a test passed on a re-run.
RERUNFAILURES_FLAKY_EXIT = 7


def order_terminal_stats(config: pytest.Config, nodeids: tuple[str, ...]) -> None:
    """Put the terminal's reports in collection order, as a serial run has them: the
    FAILURES and ERRORS sections and the short summary follow that order, not the
    order in which tests finished (a report outside the collection keeps its place
    before them: a collection error, an internal error)."""
    rank = {nodeid: i for i, nodeid in enumerate(nodeids)}
    _pytest_compat.sort_terminal_stats(
        config, lambda report: rank.get(str(getattr(report, "nodeid", "")), -1)
    )


class RunOutcome:
    """A consumer that keeps what the end of the session needs: the canonical order
    and how the run finished."""

    description = "the session's summary"

    def __init__(self) -> None:
        self.nodeids: tuple[str, ...] = ()
        self.finished: events.RunFinished | None = None
        #: A test was re-run by pytest-rerunfailures (a report with outcome ``rerun``).
        self.rerun = False

    def __call__(self, event: events.RunEvent) -> None:
        if isinstance(event, events.CollectionFinished):
            self.nodeids = event.nodeids
        elif isinstance(event, events.TestFinished):
            if not self.rerun:
                # pytest-rerunfailures' outcome, beyond pytest's three.
                self.rerun = any(str(r.outcome) == "rerun" for r in event.reports)
        elif isinstance(event, events.RunFinished):
            self.finished = event


#: ``-v`` without ``--progress-every``: a progress line this often (not on a TTY).
VERBOSE_PROGRESS_SECONDS = 30.0


def progress_writers(config: pytest.Config, settings: Settings) -> list[events.Consumer]:
    """The live status on a terminal, or plain progress lines where asked."""
    from ..reporting.progress import RunProgress
    from ..reporting.writers.live import TERMINAL_OWNERS, LiveStatus, ProgressLines, live_wanted

    file = _pytest_compat.terminal_file(config)
    progress = RunProgress()  # the predictions come with the plan (``RunPlanned``)
    owned = any(config.pluginmanager.hasplugin(name) for name in TERMINAL_OWNERS)
    capture_off = config.getoption("capture", None) == "no"
    if not owned and live_wanted(file, asked=settings.live, capture_off=capture_off):
        return [
            LiveStatus(
                progress,
                lambda: _pytest_compat.terminal_file(config),
                lambda file: _pytest_compat.set_terminal_file(config, file),
            )
        ]
    every = settings.progress_every
    if every is None and config.get_verbosity() > 0:
        every = VERBOSE_PROGRESS_SECONDS
    if not every:
        return []

    def write_line(text: str) -> None:
        _pytest_compat.end_current_line(config)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(text)

    return [ProgressLines(progress, write_line, every)]


class ControllerPlugin:
    """Registered in the main process when a run is parallel."""

    def __init__(
        self,
        config: pytest.Config,
        settings: Settings,
        fork_server: ForkServer | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        #: The environment workers start from: pytest's before plugins changed it.
        self.environment = environment
        #: Handed to the run's pool, which then owns it; shut down here if no run took it.
        self.fork_server = fork_server
        self.run_id = uuid.uuid4().hex
        self.store, self.timings = open_timings(config, settings)
        self.strategy = settings.strategy(known=bool(self.timings))
        #: Remote machines (``--tx socket=``/``ssh=``), connected now: the header shows
        #: them, and a machine that cannot be used does not count among the workers.
        self.hosts = connect_all(
            remote_machines(settings.tx),
            stdout=config.getoption("capture", None) == "no",
            memory=settings.limits.max_worker_memory is not None,
        )
        assert settings.workers is not None
        #: The run's workers: -n's and --tx's, without those of an unusable machine.
        self.workers = settings.workers.resolve() - sum(
            host.spec.count for host in self.hosts if not host.usable
        )
        if self.workers <= 0:
            for host in self.hosts:
                host.close(1.0)
            raise pytest.UsageError(
                "parallel_exec: no worker can start: "
                + "; ".join(f"{host.name}: {host.error}" for host in self.hosts)
            )
        self.recorder = OutcomeRecorder(config, self.store, settings.report_outcome)
        self.junit_order = JunitOrder(config)
        self.outcome = RunOutcome()
        self.nodes = XdistNodes(
            config,
            self.run_id,
            self.workers,
            [h.spec.gateway_spec for h in self.hosts if h.usable for _ in range(h.spec.count)],
        )
        self.stream = events.EventStream(
            [
                self.nodes,
                HookReplay(config, self.nodes.node),
                self.junit_order,
                self.recorder,
                self.outcome,
                *make_writers(config, settings),
                *progress_writers(config, settings),
            ],
            on_failure=warn_consumer_failure(config),
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        _pytest_compat.one_progress_stream(self.config)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> bool:
        return True  # workers collect; their collections are merged into the canonical list

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        settings = self.settings
        fork_server, self.fork_server = self.fork_server, None  # the pool owns it now
        hosts, self.hosts = self.hosts, []  # and the remote machines
        run = Dispatcher(
            self.config,
            session,
            RunConfig(
                run_id=self.run_id,
                workers=self.workers,
                strategy=self.strategy,
                collection=collection_mode(self.config, settings)[0],
                retries=settings.retries,
                max_worker_restart=settings.max_worker_restart,
                forked=fork_server is not None,
                capture_off=self.config.getoption("capture", None) == "no",
                environment=self.environment,
                limits=settings.limits,
                timeout_marker=not self.config.pluginmanager.hasplugin("timeout"),
                shard=settings.shard,
                shard_run_id=settings.shard_run_id,
            ),
            self.stream,
            self.timings,
            lambda make_setup: WorkerPool(
                make_setup, fork_server, hosts, settings.local_workers if hosts else None
            ),
            nodes=self.nodes,
            # Workers on other machines do not start on this machine's CPUs.
            cpus=usable_cpus() + sum(host.spec.count for host in hosts if host.usable),
        )
        try:
            run.execute()
        finally:
            if self.nodes.started():
                # xdist's count of the workers whose ``workeroutput`` the controller
                # waits for (syrupy compares it with the reports it got): every worker
                # started, a replacement for a crashed one too.
                self.config.option.numprocesses = self.nodes.started()
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Order ``--junitxml`` as a serial run does; settle the exit code; write reports."""
        self.junit_order.reorder()
        order_terminal_stats(self.config, self.outcome.nodeids)
        finished = self.outcome.finished
        if self.recorder.flaky and self.settings.fail_on_flaky and exitstatus == 0:
            session.exitstatus = exitstatus = pytest.ExitCode.TESTS_FAILED
        if (
            exitstatus == 0
            and self.outcome.rerun
            and self.settings.fail_on_flaky
            and rerunfailures_active(self.config.pluginmanager)
        ):
            # pytest-rerunfailures' own rule (it looks at items this process never has).
            session.exitstatus = exitstatus = RERUNFAILURES_FLAKY_EXIT
        if finished is not None and finished.internal_error:
            session.exitstatus = exitstatus = pytest.ExitCode.INTERNAL_ERROR
        not_run = finished.tests_not_run if finished is not None else 0
        aborted = events.cut_short(session, exitstatus) or bool(not_run)
        self.stream.publish(
            events.SessionEnded(int(exitstatus), aborted, outcome=self.recorder.outcome)
        )

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The run's own lines, in a section of their own (not under ``-rA``'s PASSES)."""
        lines: list[tuple[str, dict[str, bool]]] = []
        finished = self.outcome.finished
        if finished is not None and finished.tests_not_run and finished.stop_reason is not None:
            count = finished.tests_not_run
            lines.append(
                (
                    f"parallel_exec: {count} test{'s' if count != 1 else ''} "
                    f"not run ({finished.stop_reason})",
                    {},
                )
            )
        if finished is not None and finished.running_at_interrupt:
            yellow = {"yellow": True}
            lines.append(("parallel_exec: interrupted while these tests were running:", yellow))
            for worker_id, nodeid, seconds in finished.running_at_interrupt:
                text = f"parallel_exec:   {nodeid} on {worker_id}, running for {seconds:.1f}s"
                lines.append((text, yellow))
        verbose = self.config.get_verbosity() > 0
        lines.extend((line, {}) for line in self.recorder.summary_lines(verbose))
        flaky = self.recorder.flaky
        if flaky:
            failing = " (--fail-on-flaky: the run fails)" if self.settings.fail_on_flaky else ""
            lines.append(
                (
                    f"parallel_exec: {len(flaky)} flaky test{'s' if len(flaky) != 1 else ''}"
                    f" (failed, then passed on a retry){failing}:",
                    {"yellow": True},
                )
            )
            lines.extend((f"parallel_exec:   flaky {nodeid}", {"yellow": True}) for nodeid in flaky)
        if lines:
            terminalreporter.write_sep("=", "parallel_exec")
            for text, markup in lines:
                terminalreporter.write_line(text, **markup)

    @pytest.hookimpl
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.fork_server is not None:
            self.fork_server.shutdown()
        for host in self.hosts:  # no run took them
            host.close(1.0)
        if self.store is not None:
            self.store.close()
