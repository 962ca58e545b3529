"""Transports: how a worker process is started, ended and examined.

The pool drives every worker the same way once it has an execnet gateway to it; a
transport is what differs: how the process is started (``SpawnTransport``: a new
interpreter; ``ForkServerTransport``: forked from the fork server), how it is killed
and its exit status read (``WorkerProcess``), and how the evidence it left is gathered
(``crash_evidence``: read where the worker ran and handed over as data).  Both
transports here start workers on this machine, so both read the worker's files in the
run directory; a transport to another machine would gather the same data there.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any, Protocol

from .. import processes
from ..wire.progress import ProgressEntry, ProgressFile
from .forkserver import ForkServer

#: What the controller reads of a worker's stderr: head and tail beyond this.
STDERR_EXCERPT_BYTES = 16000


class WorkerProcess(Protocol):
    """A worker's process: the part of ``subprocess.Popen`` the pool uses."""

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int | None: ...

    def kill(self) -> None: ...


def bootstrap_source(package_parent: str, nice: int = 0) -> str:
    """The code executed in a new gateway to enter the worker's ``main``; ``nice``
    lowers the process's priority before anything heavy is imported."""
    return (
        (f"import os\nif hasattr(os, 'nice'): os.nice({int(nice)})\n" if nice else "")
        + "import sys\n"
        f"_p = {package_parent!r}\n"
        "if _p not in sys.path: sys.path.append(_p)\n"
        "from parallel_exec.worker.main import main\n"
        "main(channel)\n"
    )


def read_excerpt(path: str, start: int = 0, limit: int = STDERR_EXCERPT_BYTES) -> str:
    """The text of ``path`` from ``start``; when longer than ``limit``, its head and tail."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return ""
    if len(data) > limit:
        head, tail = data[: limit // 4], data[-(limit - limit // 4) :]
        skipped = len(data) - len(head) - len(tail)
        data = head + f"\n[... {skipped} bytes not shown ...]\n".encode() + tail
    return data.decode("utf-8", "replace")


class LocalTransport:
    """What both local transports share: the worker's files are in the run directory."""

    name = "local"
    package_parent = str(Path(__file__).resolve().parent.parent.parent)

    def __init__(self) -> None:
        self._watermark = processes.PidWatermark()
        self._snapshot: list[processes.ProcessInfo] | None = None
        self._owned: dict[int, list[int]] = {}

    def open(self, group: Any, worker_id: str, nice: int) -> tuple[Any, WorkerProcess, str]:
        """Start a worker: its gateway, its process and the code that enters ``main``."""
        raise NotImplementedError

    def close(self, timeout: float) -> None:
        """End what the transport itself started (the fork server)."""

    def running(self, files_base: str) -> ProgressEntry:
        """The test the worker runs, from its progress file."""
        return ProgressFile.read_full(files_base + ".progress")

    def kill(self, process: WorkerProcess | None, pid: int | None) -> None:
        """The one way a worker is killed: the process, then every process left in its
        group (what its tests started; the worker leads a group of its own)."""
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                process.kill()
        if pid:
            processes.kill_group(pid, signal.SIGKILL)

    def signal(self, pid: int, signum: int, group: bool) -> None:
        """A signal to a live worker (its stacks), or to its whole group (SIGTERM)."""
        if group:
            processes.kill_group(pid, signum)
        else:
            processes.kill([pid], signum)

    def memory(self, pid: int) -> int:
        """Resident memory of a worker and of the processes it started, in bytes.  The
        machine's processes are looked at again only when one was created since."""
        if self._watermark.moved() or self._snapshot is None:
            self._snapshot = processes.snapshot()
            self._owned.clear()
        owned = self._owned.get(pid)
        if owned is None:
            owned = [info.pid for info in processes.owned_by(pid, self._snapshot, pid)]
            self._owned[pid] = owned
        return processes.rss([pid, *owned])

    def stderr(self, files_base: str, start: int = 0) -> str:
        return read_excerpt(files_base + ".err", start)

    def status_lost(self, process: Any) -> bool:
        """The worker's exit status cannot be known (its fork server had ended)."""
        return bool(getattr(process, "ended_unseen", False))


class SpawnTransport(LocalTransport):
    """A new interpreter per worker: an execnet ``popen`` gateway."""

    name = "spawn"

    def open(self, group: Any, worker_id: str, nice: int) -> tuple[Any, WorkerProcess, str]:
        import sys

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
