"""A pool without processes, to drive the dispatcher step by step in unit tests.

It records what the dispatcher asks of it (starts, messages, kills) and hands back the
evidence a test gives it for a worker that ends.  Workers are simulated by the test:
it builds the pool events a worker would cause (``Sim``) and passes them to
``Dispatcher.handle`` one at a time, so every step can be checked.
"""

from __future__ import annotations

import queue
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from parallel_exec._version import __version__
from parallel_exec.controller.dispatcher import Dispatcher, RunConfig
from parallel_exec.controller.pool import (
    ChannelClosed,
    PoolEvent,
    Received,
    WorkerHandle,
    WorkerState,
)
from parallel_exec.controller.transports import CrashEvidence
from parallel_exec.reporting import events
from parallel_exec.wire import protocol
from parallel_exec.wire.progress import ProgressEntry
from parallel_exec.wire.reports import serialize


class FakePool:
    def __init__(self, make_setup: Callable[[str, str, str], protocol.WorkerSetup]) -> None:
        self.make_setup = make_setup
        self.inbox: queue.SimpleQueue[PoolEvent] = queue.SimpleQueue()
        self.workers: dict[str, WorkerHandle] = {}
        self.run_dir = "/nonexistent-run-dir"
        self.setups: dict[str, protocol.WorkerSetup] = {}
        self.nice: dict[str, int] = {}
        self.sent: list[tuple[str, protocol.ControllerMessage]] = []
        self.killed: list[str] = []
        self.released: list[str] = []
        self.evidence: dict[str, CrashEvidence] = {}
        self.stderr: dict[str, str] = {}
        self.signals: list[tuple[str, int]] = []
        #: What each worker's progress file would say: (test index, wall-clock start).
        self.running: dict[str, tuple[int, float]] = {}
        #: A test's own time limit, by worker (as its progress file would say).
        self.limits: dict[str, float] = {}
        #: Resident memory of each worker and its processes, in bytes.
        self.rss: dict[str, int] = {}
        self._serial = 0

    def next_worker_id(self) -> str:
        worker_id = f"gw{self._serial}"
        self._serial += 1
        return worker_id

    def start(self, worker_ids: list[str], nice: int = 0) -> None:
        for worker_id in worker_ids:
            self.workers[worker_id] = WorkerHandle(worker_id, f"/nonexistent/{worker_id}")
            self.nice[worker_id] = nice
            self.setups[worker_id] = self.make_setup(worker_id, f"{worker_id}.progress", "popen")

    def send(self, worker_id: str, message: protocol.ControllerMessage) -> bool:
        handle = self.workers.get(worker_id)
        if handle is None or handle.state in (WorkerState.FINISHED, WorkerState.CRASHED):
            return False
        self.sent.append((worker_id, message))
        return True

    def alive(self) -> list[WorkerHandle]:
        return [
            h
            for h in self.workers.values()
            if h.state not in (WorkerState.FINISHED, WorkerState.CRASHED)
        ]

    def release(self, worker_id: str) -> None:
        self.released.append(worker_id)

    def kill(self, worker_id: str) -> None:
        self.killed.append(worker_id)

    def signal(self, worker_id: str, signum: int, group: bool = False) -> None:
        self.signals.append((worker_id, signum))

    def shutdown(self, timeout: float = 5.0) -> None:
        pass

    def stream_output(self, stdout: bool) -> None:
        pass

    def crash_evidence(self, worker_id: str) -> CrashEvidence:
        return self.evidence.get(worker_id, CrashEvidence(-11, "", -1, "", ""))

    def stderr_excerpt(self, worker_id: str) -> str:
        return self.stderr.get(worker_id, "")

    def progress(self, worker_id: str) -> ProgressEntry:
        index, started = self.running.get(worker_id, (-1, 0.0))
        return ProgressEntry(index, 0, started, self.limits.get(worker_id, 0.0))

    def memory(self, worker_id: str) -> int:
        return self.rss.get(worker_id, 0)

    # ------------------------------------------------------------ what was sent

    def messages(self, worker_id: str, kind: type[Any] | None = None) -> list[Any]:
        return [m for w, m in self.sent if w == worker_id and (kind is None or isinstance(m, kind))]

    def assigned(self, worker_id: str) -> list[str]:
        return [n for m in self.messages(worker_id, protocol.Assign) for n in m.nodeids]

    def stopped(self, worker_id: str) -> bool:
        return bool(self.messages(worker_id, protocol.Stop))


@dataclass
class Recorder:
    """A consumer of the run's events that keeps them."""

    events: list[events.RunEvent] = field(default_factory=list)

    def __call__(self, event: events.RunEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def finished(self) -> dict[str, events.TestFinished]:
        return {e.nodeid: e for e in self.of(events.TestFinished)}


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class Sim:
    """Builds the pool events of simulated workers, for one dispatcher."""

    def __init__(
        self,
        pytester: pytest.Pytester,
        nodeids: Sequence[str],
        *,
        workers: int = 2,
        cpus: int = 2,
        collection: str = "full",
        retries: int = 0,
        max_worker_restart: int | None = None,
        strategy: str = "load",
        args: Sequence[str] = (),
    ) -> None:
        self.config = pytester.parseconfigure("-p", "no:cacheprovider", *args)
        self.session = pytest.Session.from_config(self.config)
        self.nodeids = tuple(nodeids)
        self.files = tuple(dict.fromkeys(file_of(n) for n in nodeids))
        self.recorder = Recorder()
        self.stream = events.EventStream([self.recorder])
        self.dispatcher = Dispatcher(
            self.config,
            self.session,
            RunConfig(
                run_id="run",
                workers=workers,
                strategy=strategy,
                collection=collection,
                retries=retries,
                max_worker_restart=max_worker_restart,
                forked=False,
                capture_off=False,
            ),
            self.stream,
            {},
            FakePool,
            cpus=cpus,
        )
        pool = self.dispatcher.pool
        assert isinstance(pool, FakePool)
        self.pool = pool

    def send(self, event: PoolEvent) -> None:
        self.dispatcher.handle(event)

    # ------------------------------------------------------------ worker messages

    def message(self, worker_id: str, message: protocol.WorkerMessage) -> None:
        self.send(Received(worker_id, message))

    def hello(self, worker_id: str, **versions: Any) -> None:
        fields: dict[str, Any] = {
            "python": sys.version.split()[0],
            "package_version": __version__,
        }
        fields.update(versions)
        self.send(Received(worker_id, protocol.Hello(worker_id=worker_id, pid=100, **fields)))

    def collected(self, worker_id: str) -> None:
        """The worker's collection: everything (``full``) or its share of the files."""
        share = self.pool.setups[worker_id].share
        ordinals = {f: i for i, f in enumerate(self.files)}
        mine = [
            n
            for n in self.nodeids
            if share is not None and ordinals[file_of(n)] % share[1] == share[0]
        ]
        self.send(
            Received(
                worker_id,
                protocol.Collected(
                    worker_id=worker_id,
                    share=share,
                    files=self.files,
                    nodeids=tuple(mine),
                    item_files=tuple(ordinals[file_of(n)] for n in mine),
                    item_groups=tuple(None for _ in mine),
                    collect_reports=(),
                    deselected=(),
                    warnings=(),
                    collection_failed=False,
                ),
            )
        )

    def start(self, *worker_ids: str) -> None:
        for worker_id in worker_ids:
            self.hello(worker_id)
        for worker_id in worker_ids:
            self.collected(worker_id)

    def record(
        self, nodeid: str, call: str = "passed", partial: bool = False
    ) -> protocol.TestRecord:
        location = (file_of(nodeid), 1, nodeid.split("::")[-1])
        phases = [("setup", "passed"), ("call", call)] + (
            [] if partial else [("teardown", "passed")]
        )
        reports = tuple(
            serialize(
                self.config,
                pytest.TestReport(
                    nodeid=nodeid,
                    location=location,
                    keywords={},
                    outcome=outcome,  # type: ignore[arg-type]
                    longrepr=None if outcome == "passed" else "assert 0",
                    when=when,  # type: ignore[arg-type]
                    duration=0.01,
                ),
            )
            for when, outcome in phases
        )
        return protocol.TestRecord(nodeid, location, reports, partial=partial, started_at=1.0)

    def progress(
        self,
        worker_id: str,
        *records: protocol.TestRecord,
        running: str | None = None,
        want_more: bool = False,
    ) -> None:
        self.send(
            Received(
                worker_id,
                protocol.Progress(
                    worker_id=worker_id,
                    tests=records,
                    want_more=want_more,
                    running=running,
                    running_since=2.0,
                ),
            )
        )

    def passed(self, worker_id: str, *nodeids: str, want_more: bool = True) -> None:
        self.progress(worker_id, *(self.record(n) for n in nodeids), want_more=want_more)

    def session_finished(self, worker_id: str, exitstatus: int = 0) -> None:
        self.send(
            Received(
                worker_id,
                protocol.SessionFinished(
                    worker_id=worker_id, exitstatus=exitstatus, workeroutput={"cov": 1}
                ),
            )
        )
        self.send(ChannelClosed(worker_id))

    def crash(self, worker_id: str, running: str | None, stderr: str = "boom\n") -> None:
        index = self.nodeids.index(running) if running is not None else -1
        self.pool.evidence[worker_id] = CrashEvidence(-11, "", index, stderr, stderr)
        self.send(ChannelClosed(worker_id))

    def finish_run(self) -> None:
        """The loop is over (every worker ended)."""
        self.dispatcher.finish(interrupted=False)
