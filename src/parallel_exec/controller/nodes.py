"""pytest-xdist's plugin contract, controller side: a node per worker, and xdist's hooks
called when xdist calls them.

=============================================  ==========================================
hook                                           called
=============================================  ==========================================
``pytest_configure_node(node)``                before the worker starts; ``node.workerinput``
                                               is then sent in its ``WorkerSetup``
``pytest_testnodeready(node)``                 its handshake arrived (``WorkerStarted``)
``pytest_xdist_node_collection_finished``      it joined the run with the agreed collection
(``node, ids``)                                (``WorkerReady``); ``ids``: the run's tests
``pytest_testnodedown(node, error)``           its session ended (``WorkerFinished``:
                                               ``node.workeroutput`` set, ``error`` None) or
                                               it crashed (``WorkerCrashed``: no
                                               ``workeroutput``, ``error`` says how)
``pytest_handlecrashitem(crashitem, report,    a worker crashed in a test; a plugin may run
sched)``                                       it again (``sched.mark_test_pending``)
``pytest_xdist_auto_num_workers(config)``      ``-n auto`` (``settings.resolve_auto``)
=============================================  ==========================================

A node offers what plugins read of xdist's ``WorkerController``: ``workerinput``,
``workeroutput``, ``gateway.id``, ``gateway.spec``, ``gateway._rinfo()``, ``config``,
``nodemanager.roots``/``specs``/``testrunuid``, ``shutting_down``.  Replayed reports
carry their worker's node as ``report.node`` (see ``reporting/replay.py``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import execnet
import pytest

from ..reporting import events


@dataclass
class RemoteInfo:
    """execnet's ``RInfo``: what ``gateway._rinfo()`` returns."""

    executable: str
    version_info: tuple[Any, ...]
    platform: str
    cwd: str
    pid: int = 0


class NodeGateway:
    """The part of an execnet ``Gateway`` plugins read: ``id``, ``spec``, ``_rinfo()``."""

    def __init__(self, worker_id: str, cwd: str, spec: str) -> None:
        self.id = worker_id
        self.spec = execnet.XSpec(f"{spec}//id={worker_id}")
        # Until the worker says otherwise: the handshake guarantees the same interpreter.
        self.info = RemoteInfo(sys.executable, tuple(sys.version_info[:5]), sys.platform, cwd)

    def _rinfo(self, update: bool = False) -> RemoteInfo:
        return self.info

    def __repr__(self) -> str:
        return f"<NodeGateway id={self.id!r}>"


@dataclass
class NodeManager:
    """The part of xdist's ``NodeManager`` plugins read."""

    config: pytest.Config
    testrunuid: str
    roots: list[Any] = field(default_factory=list)
    specs: list[Any] = field(default_factory=list)


class WorkerNode:
    """A worker as xdist's hooks hand it to plugins (xdist's ``WorkerController``)."""

    def __init__(
        self, worker_id: str, config: pytest.Config, manager: NodeManager, spec: str
    ) -> None:
        self.config = config
        self.nodemanager = manager
        self.gateway = NodeGateway(worker_id, str(config.invocation_params.dir), spec)
        self.workerinput: dict[str, Any] = {
            "workerid": worker_id,
            "workercount": len(manager.specs),
            "testrunuid": manager.testrunuid,
            "mainargv": list(sys.argv),
        }
        self._down = False
        #: What xdist's worker says when it is ready; pytest prints it above a failure
        #: of a report carrying the node (``[gw0] linux -- Python 3.11.7 /usr/bin/...``).
        self.workerinfo: dict[str, Any] = {}
        self.describe(self.gateway.info)
        # ``workeroutput`` is set when the worker's session ends, as in xdist: a plugin
        # tells a crashed worker by its absence (``getattr(node, "workeroutput", {})``).

    def describe(self, info: RemoteInfo) -> None:
        self.gateway.info = info
        self.workerinfo = {
            "version": ".".join(str(part) for part in info.version_info[:3]),
            "version_info": info.version_info,
            "sysplatform": info.platform,
            "platform": info.platform,
            "executable": info.executable,
            "cwd": info.cwd,
            "id": self.gateway.id,
            "spec": self.gateway.spec,
        }

    @property
    def shutting_down(self) -> bool:
        return self._down

    def __repr__(self) -> str:
        return f"<WorkerController {self.gateway.id}>"


class CrashScheduler:
    """The ``sched`` of ``pytest_handlecrashitem``: a plugin asks to run a test again."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.pending: list[str] = []

    def mark_test_pending(self, item: str) -> None:
        self.pending.append(item)


class XdistNodes:
    """The run's nodes, and xdist's hooks called on them.  A consumer of the run's
    events; a plugin raising in one of these hooks is an error of the run, as under
    xdist (not isolated)."""

    description = "pytest-xdist's hooks"
    isolated = False

    def __init__(
        self, config: pytest.Config, run_id: str, workers: int, remote: Sequence[str] = ()
    ) -> None:
        """``remote``: the spec of each worker on another machine (``socket=HOST:PORT``,
        once per worker); the others run here (``popen``)."""
        self.config = config
        self.hook = config.hook
        kinds = ["popen"] * (workers - len(remote)) + list(remote)
        self.manager = NodeManager(
            config,
            run_id,
            specs=[execnet.XSpec(f"{spec}//id=gw{i}") for i, spec in enumerate(kinds)],
        )
        self.nodes: dict[str, WorkerNode] = {}
        self.nodeids: tuple[str, ...] = ()

    def _call(self, name: str, **kwargs: Any) -> Any:
        caller = getattr(self.hook, name, None)
        return caller(**kwargs) if caller is not None else None

    def configure(self, worker_id: str, spec: str = "popen") -> dict[str, Any]:
        """A worker is about to start (``spec``: where, in execnet's words): its node,
        configured by plugins; returns its ``workerinput``."""
        node = WorkerNode(worker_id, self.config, self.manager, spec)
        self.nodes[worker_id] = node
        self._call("pytest_configure_node", node=node)
        return dict(node.workerinput)

    def node(self, worker_id: str) -> WorkerNode | None:
        return self.nodes.get(worker_id)

    def __call__(self, event: events.RunEvent) -> None:
        if isinstance(event, events.CollectionFinished):
            self.nodeids = event.nodeids
            return
        node = self.nodes.get(getattr(event, "worker_id", ""))
        if node is None:
            return
        if isinstance(event, events.WorkerStarted):
            node.describe(
                RemoteInfo(
                    event.executable or sys.executable,
                    tuple(event.version_info) or tuple(sys.version_info[:5]),
                    event.platform or sys.platform,
                    event.cwd or os.getcwd(),
                    event.pid,
                )
            )
            self._call("pytest_testnodeready", node=node)
        elif isinstance(event, events.WorkerReady):
            self._call("pytest_xdist_node_collection_finished", node=node, ids=list(self.nodeids))
        elif isinstance(event, events.WorkerFinished) and not node._down:
            node._down = True
            node.workeroutput = {  # type: ignore[attr-defined]
                **event.workeroutput,
                "exitstatus": event.exitstatus,
            }
            self._call("pytest_testnodedown", node=node, error=None)
        elif isinstance(event, events.WorkerCrashed) and not node._down:
            node._down = True
            self._call("pytest_testnodedown", node=node, error=f"worker {event.description}")

    def started(self) -> int:
        """How many workers were started (each sends its ``workeroutput`` unless it
        crashes)."""
        return len(self.nodes)

    def crashed_in(self, nodeid: str, report: pytest.TestReport) -> bool:
        """``pytest_handlecrashitem``: whether a plugin asked to run the crashed test
        again (it may also have changed ``report``, e.g. its outcome to ``rerun``)."""
        caller = getattr(self.hook, "pytest_handlecrashitem", None)
        if caller is None or not caller.get_hookimpls():
            return False
        sched = CrashScheduler(self.config)
        caller(crashitem=nodeid, report=report, sched=sched)
        return nodeid in sched.pending


def reports_with_node(reports: Sequence[Any], node: WorkerNode | None) -> None:
    """Mark replayed reports with their worker's node, as xdist does (``report.node``)."""
    if node is None:
        return
    for report in reports:
        report.node = node
