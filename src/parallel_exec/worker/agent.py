"""The agent: the controller's hands on another machine (``--tx socket=``, ``--tx ssh=``).

The controller opens one execnet gateway per remote machine and runs ``serve`` in it.
The agent then

- starts each worker there (``serve_worker``: a ``popen`` gateway of the agent's own
  interpreter, the worker's set-up made true on that machine by ``wire.remote.localize``)
  and relays the worker's channel to the controller, byte for byte;
- watches its workers' files (``watch``): the progress file, what they write to
  stdout/stderr, their memory, and sends what changed (``WorkerUpdate``), so the
  controller's guards and output work as for a local worker;
- answers the controller's requests: signals, kills, releases, and the evidence a
  worker left when it ended (``Evidence``: it outlives its workers);
- ends every worker it started, and removes its files, when the controller goes (the
  run ended, or the connection was lost).

Everything that reads a worker's files runs here, on the worker's machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import execnet

from .. import processes
from .._version import __version__
from ..wire import protocol, remote
from ..wire.progress import NOTHING, ProgressEntry, ProgressFile, left_behind, read_from

#: How often the agent looks at its workers' files.
WATCH_SECONDS = 0.05

_agent: Agent | None = None


@dataclass
class RemoteWorker:
    worker_id: str
    files_base: str
    gateway: Any = None
    popen: Any = None
    progress: ProgressEntry = NOTHING
    offsets: dict[str, int] = field(default_factory=lambda: {".out": 0, ".err": 0})
    #: Its end was seen and its last update sent.
    done: bool = False

    @property
    def pid(self) -> int | None:
        return getattr(self.popen, "pid", None)


class Agent:
    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.group = execnet.Group()
        self.run_dir = tempfile.mkdtemp(prefix="parallel_exec-remote-")
        self.cwd = os.getcwd()
        self.environ = dict(os.environ)
        self.package_parent = str(Path(__file__).resolve().parent.parent.parent)
        self.workers: dict[str, RemoteWorker] = {}
        self.lock = threading.Lock()
        self.ended = threading.Event()
        self.settings = remote.AgentSetup(__version__)
        self.memory = processes.TreeMemory()

    # ------------------------------------------------------------ the controller

    def serve(self) -> None:
        setup = remote.decode(self.channel.receive())
        if isinstance(setup, remote.AgentSetup):
            self.settings = setup
        self.send(
            remote.AgentHello(
                pid=os.getpid(),
                package_version=__version__,
                python=sys.version.split()[0],
                executable=sys.executable,
                platform=sys.platform,
                hostname=socket.gethostname(),
                cpus=len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else os.cpu_count() or 1,
                cwd=self.cwd,
                version_info=tuple(sys.version_info[:5]),
            )
        )
        threading.Thread(target=self.watch, name="parallel_exec-agent-watch", daemon=True).start()
        self.channel.setcallback(self.on_request, endmarker=None)
        self.ended.wait()  # the gateway serves this channel until the controller goes

    def send(self, message: remote.AgentMessage) -> None:
        with contextlib.suppress(Exception):
            self.channel.send(remote.encode(message))

    def on_request(self, payload: bytes | None) -> None:
        if payload is None:  # the controller has gone (the run ended, or it was lost)
            self.close()
            return
        request = remote.decode(payload)
        worker = self.workers.get(getattr(request, "worker_id", ""))
        if worker is None:
            if isinstance(request, remote.GatherEvidence):  # it never started here
                self.send(remote.Evidence(request.worker_id, None, NOTHING, "", ""))
            return
        if isinstance(request, remote.SignalWorker):
            processes.signal_worker(worker.popen, worker.pid, request.signum, request.group)
        elif isinstance(request, remote.KillWorker):
            processes.kill_worker(worker.popen, worker.pid)
        elif isinstance(request, remote.ReleaseWorker):
            with contextlib.suppress(Exception):
                worker.gateway.exit()
        elif isinstance(request, remote.GatherEvidence):
            threading.Thread(target=self.gather, args=(worker, request.wait), daemon=True).start()

    def gather(self, worker: RemoteWorker, wait: float) -> None:
        exit_code = None
        if worker.popen is not None:
            with contextlib.suppress(Exception):
                exit_code = worker.popen.wait(timeout=wait)
        files = left_behind(worker.files_base)
        self.send(
            remote.Evidence(
                worker.worker_id,
                exit_code,
                files.progress,
                stderr_since_test=files.stderr_since_test,
                stderr=files.stderr,
                finished=files.finished,
            )
        )

    def close(self) -> None:
        """End every worker started here, and what their tests left, then the files."""
        for worker in list(self.workers.values()):
            processes.kill_worker(worker.popen, worker.pid)
        with contextlib.suppress(Exception):
            self.group.terminate(timeout=1.0)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.ended.set()

    # ------------------------------------------------------------ the files

    def watch(self) -> None:
        """Send what changed in each worker's files, until the controller goes."""
        while not self.ended.wait(WATCH_SECONDS):
            for worker in list(self.workers.values()):
                if not worker.done:
                    self.update(worker)

    def update(self, worker: RemoteWorker) -> None:
        exit_code = worker.popen.poll() if worker.popen is not None else None
        ended = exit_code is not None
        entry = ProgressFile.read_full(worker.files_base + ".progress")
        base = worker.files_base
        out = read_from(base + ".out", worker.offsets[".out"]) if self.settings.stdout else b""
        err = read_from(base + ".err", worker.offsets[".err"])
        worker.offsets[".out"] += len(out)
        worker.offsets[".err"] += len(err)
        rss = 0
        if self.settings.memory and worker.pid and not ended:
            rss = self.memory.rss(worker.pid)
        if entry != worker.progress or out or err or rss or ended:
            worker.progress = entry
            self.send(remote.WorkerUpdate(worker.worker_id, entry, out, err, rss, ended, exit_code))
        worker.done = ended


def serve(channel: Any) -> None:
    """The agent's entry point (``wire.remote.AGENT_SOURCE``)."""
    global _agent
    _agent = Agent(channel)
    try:
        _agent.serve()
    finally:
        _agent.close()


def serve_worker(channel: Any, worker_id: str, nice: int) -> None:
    """Start worker ``worker_id`` here and relay its channel until one side ends."""
    agent = _agent
    if agent is None:
        raise RuntimeError("parallel_exec: no agent serves this gateway")
    setup = protocol.decode(channel.receive())
    assert isinstance(setup, protocol.WorkerSetup)
    setup = remote.localize(setup, agent.cwd, agent.run_dir, os.getpid(), agent.environ)
    worker = RemoteWorker(worker_id, os.path.join(agent.run_dir, worker_id))
    try:
        worker.gateway = agent.group.makegateway(f"popen//id={worker_id}//python={sys.executable}")
        worker.popen = worker.gateway._io.popen
        inner = worker.gateway.remote_exec(remote.bootstrap_source(agent.package_parent, nice))
    except Exception as exc:
        agent.send(remote.StartError(worker_id, f"{type(exc).__name__}: {exc}"))
        return
    with agent.lock:
        agent.workers[worker_id] = worker
    done = threading.Event()

    def to_controller(payload: bytes | None) -> None:
        if payload is None:
            done.set()
        else:
            channel.send(payload)

    def to_worker(payload: bytes | None) -> None:
        if payload is None:
            done.set()
        else:
            with contextlib.suppress(Exception):
                inner.send(payload)

    inner.setcallback(to_controller, endmarker=None)
    channel.setcallback(to_worker, endmarker=None)
    inner.send(protocol.encode(setup))
    done.wait()
