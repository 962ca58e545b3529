"""Transports: how a worker process is started, ended and examined.

The pool drives every worker the same way once it has an execnet gateway to it; a
transport is what differs: how the process is started (``SpawnTransport``: a new
interpreter; ``ForkServerTransport``: forked from the fork server; ``RemoteTransport``
in ``remote.py``: started by an agent on another machine), how it is signalled, killed
and released, and how the evidence it left is gathered (``evidence``: read where the
worker ran and handed over as data).  The local transports read the worker's files in
the run directory; the remote one gets the same data from its agent.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import processes
from ..wire.progress import ProgressEntry, ProgressFile, left_behind, read_excerpt
from ..wire.remote import bootstrap_source
from .forkserver import ForkServer


class WorkerProcess(Protocol):
    """A worker's process: the part of ``subprocess.Popen`` the pool uses."""

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int | None: ...

    def kill(self) -> None: ...


class Worker(Protocol):
    """What a transport knows of a worker (the pool's ``WorkerHandle``)."""

    worker_id: str
    files_base: str
    gateway: Any
    process: WorkerProcess | None
    pid: int | None


@dataclass(frozen=True)
class CrashEvidence:
    """What the transport can tell about a worker that ended: gathered where the
    worker ran and handed over as data (no path for the controller to open)."""

    #: Its exit code, a negative signal number, or None when unknown.
    exit_code: int | None
    #: Why more is not known (its fork server had ended, its machine was lost); "".
    note: str
    #: The controller's index of the test it was running (-1: none).
    running: int
    #: What it wrote to stderr since that test began (head and tail when long).
    stderr_since_test: str
    #: What it wrote to stderr altogether (head and tail when long).
    stderr: str
    #: When that test began (``time.time()``; 0: unknown).
    started: float = 0.0
    #: Tests it had finished but not sent (``ResultJournal``): encoded ``Progress``
    #: messages, one test each.
    finished: tuple[bytes, ...] = ()


def exit_status(process: WorkerProcess | None, timeout: float) -> int | None:
    """The process's exit status, waiting at most ``timeout`` (None: unknown)."""
    if process is None:
        return None
    try:
        return process.wait(timeout=timeout)
    except Exception:
        return None


class Transport(Protocol):
    """What the pool needs of a way to run workers."""

    name: str
    #: Its workers' files are on this machine (the pool reads their output itself).
    local: bool
    #: The Python version its workers run (their handshake must say it).
    python: str

    def open(self, group: Any, worker_id: str, nice: int) -> tuple[Any, WorkerProcess, str]:
        """Start a worker: its gateway, its process and the code that enters ``main``."""
        ...

    def close(self, timeout: float) -> None: ...

    def running(self, worker: Worker) -> ProgressEntry: ...

    def kill(self, worker: Worker) -> None: ...

    def signal(self, worker: Worker, signum: int, group: bool) -> None: ...

    def memory(self, worker: Worker) -> int: ...

    def stderr(self, worker: Worker) -> str: ...

    def evidence(self, worker: Worker, wait: float) -> CrashEvidence: ...

    def release(self, worker: Worker) -> None: ...


class LocalTransport:
    """What both local transports share: the worker's files are in the run directory."""

    name = "local"
    local = True
    python = sys.version.split()[0]
    package_parent = str(Path(__file__).resolve().parent.parent.parent)

    def __init__(self) -> None:
        self._memory = processes.TreeMemory()

    def open(self, group: Any, worker_id: str, nice: int) -> tuple[Any, WorkerProcess, str]:
        raise NotImplementedError

    def close(self, timeout: float) -> None:
        """End what the transport itself started (the fork server)."""

    def running(self, worker: Worker) -> ProgressEntry:
        """The test the worker runs, from its progress file."""
        return ProgressFile.read_full(worker.files_base + ".progress")

    def kill(self, worker: Worker) -> None:
        processes.kill_worker(worker.process, worker.pid)

    def signal(self, worker: Worker, signum: int, group: bool) -> None:
        processes.signal_worker(worker.process, worker.pid, signum, group)

    def memory(self, worker: Worker) -> int:
        """Resident memory of a worker and of the processes it started, in bytes."""
        return self._memory.rss(worker.pid) if worker.pid else 0

    def stderr(self, worker: Worker) -> str:
        return read_excerpt(worker.files_base + ".err")

    def evidence(self, worker: Worker, wait: float) -> CrashEvidence:
        exit_code = exit_status(worker.process, wait)
        files = left_behind(worker.files_base)
        unseen = exit_code is None and getattr(worker.process, "ended_unseen", False)
        return CrashEvidence(
            exit_code=exit_code,
            note="its exit status is unknown: the fork server that started it had ended"
            if unseen
            else "",
            running=files.progress.test,
            stderr_since_test=files.stderr_since_test,
            stderr=files.stderr,
            started=files.progress.started,
            finished=files.finished,
        )

    def release(self, worker: Worker) -> None:
        """The worker has finished its session: let its process exit now."""
        if worker.gateway is not None:
            with contextlib.suppress(Exception):
                worker.gateway.exit()


class SpawnTransport(LocalTransport):
    """A new interpreter per worker: an execnet ``popen`` gateway."""

    name = "spawn"

    def open(self, group: Any, worker_id: str, nice: int) -> tuple[Any, WorkerProcess, str]:
        gateway = group.makegateway(f"popen//id={worker_id}//python={sys.executable}")
        process = gateway._io.popen
        return gateway, process, bootstrap_source(self.package_parent, nice)


class ForkServerTransport(LocalTransport):
    """Workers forked from the fork server (see ``forkserver``); it owns the server."""

    name = "forkserver"

    def __init__(self, server: ForkServer) -> None:
        super().__init__()
        self.server = server

    def open(self, group: Any, worker_id: str, nice: int) -> tuple[Any, WorkerProcess, str]:
        gateway, process = self.server.fork(group, worker_id, nice)
        return gateway, process, bootstrap_source(self.package_parent)

    def close(self, timeout: float) -> None:
        self.server.shutdown(timeout=timeout)
