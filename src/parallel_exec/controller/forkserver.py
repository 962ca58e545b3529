"""Workers forked from one process that has already imported pytest.

A new interpreter pays for starting Python and importing pytest (about 0.15 s of CPU)
before it does anything of its own; with more workers than CPUs that is most of what
stands between the run and its last worker being ready.  The fork server pays it once:
it is an execnet popen gateway that imports the worker side and then forks one child
per request.  The child connects back to the pool over a Unix socket in the run's
private directory and serves an execnet gateway on it, so from there on a forked worker
is driven exactly like a spawned one (same bootstrap, same ``worker.main``).

What a child must not inherit is dropped right after the fork: the server's pipes to
the controller, its ``atexit`` handlers, and its environment (the child takes the
controller's current one, which is what a spawned worker would see).  Only the fork
server knows whether a child's process id still names that child, so it reaps them,
reports their exit statuses, and does the killing.

POSIX only (``fork`` and ``AF_UNIX``); elsewhere the pool spawns every worker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..wire import protocol
from ..wire.socket_io import NAME, UnixSocketIO, read_exactly

#: How long a fork may take, from request to the child's connection.
CONNECT_TIMEOUT = 60.0
#: Unix socket paths are limited to about 100 bytes (108 on Linux, 104 on macOS).
MAX_SOCKET_PATH = 100


def available() -> bool:
    """Whether this platform can fork workers (``fork`` and Unix sockets)."""
    return hasattr(os, "fork") and hasattr(socket, "AF_UNIX") and sys.platform != "win32"


def server_source(package_parent: str, path: str) -> str:
    """The code the pool executes in the fork server's gateway."""
    return (
        "import sys\n"
        f"_p = {package_parent!r}\n"
        "if _p not in sys.path: sys.path.append(_p)\n"
        "from parallel_exec.worker.forkserver import serve\n"
        f"serve(channel, {path!r})\n"
    )


class ForkedProcess:
    """A forked worker's process, with the part of ``subprocess.Popen``'s interface the
    pool uses; its exit status comes from the fork server."""

    def __init__(self, worker_id: str, pid: int, server: ForkServer) -> None:
        self.worker_id = worker_id
        self.pid = pid
        self.returncode: int | None = None
        self._server = server
        self._ended = threading.Event()
        self._orphaned = False

    def poll(self) -> int | None:
        if self._orphaned and not self._ended.is_set() and not _pid_alive(self.pid):
            self._ended.set()  # its status is unknown: nobody reaped it for us
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if self._orphaned:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._ended.is_set():
                self.poll()
                if deadline is not None and time.monotonic() > deadline:
                    break
                self._ended.wait(ORPHAN_POLL_SECONDS)
        if not self._ended.wait(timeout if not self._orphaned else 0):
            raise subprocess.TimeoutExpired(f"worker {self.worker_id}", timeout or 0.0)
        return self.returncode

    def kill(self) -> None:
        if self._ended.is_set():
            return
        if self._orphaned:
            if _pid_alive(self.pid):
                with contextlib.suppress(OSError):
                    os.kill(self.pid, signal.SIGKILL)
            return
        self._server.kill(self.worker_id)

    @property
    def ended_unseen(self) -> bool:
        """It ended after the fork server did: its exit status is not known."""
        return self._orphaned and self._ended.is_set() and self.returncode is None

    def ended(self, returncode: int) -> None:
        """The exit status, as the fork server reported it."""
        if not self._ended.is_set():
            self.returncode = returncode
            self._ended.set()

    def orphan(self) -> None:
        """The fork server is gone: the worker goes on, but its exit status will not be
        reported; it is watched (and killed) by its process id from now on."""
        self._orphaned = True


class ForkServer:
    """The pool's side: starts the server, asks it for workers, and turns each child's
    connection into an execnet gateway of the pool's group.

    Started as early as the plugin knows it will be used, so that its start-up overlaps
    the main process's own.  The server is a gateway of a group of its own, ended after
    the workers' group: a worker that is still exiting keeps its parent, and its exit
    status is reported.  The socket lives in a private (0700) directory of its own.
    """

    def __init__(self) -> None:
        import execnet

        if not available():
            raise OSError("workers cannot be forked on this platform")
        self._dir = tempfile.mkdtemp(prefix="parallel_exec-fork-")
        self._path = os.path.join(self._dir, "s")
        if len(self._path.encode()) > MAX_SOCKET_PATH:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise OSError(f"socket path too long for a Unix socket: {self._path}")
        self._lock = threading.Lock()
        self._forked: dict[str, Future[ForkedProcess]] = {}
        self._connected: dict[str, Future[socket.socket]] = {}
        self._processes: dict[str, ForkedProcess] = {}
        self._closed = False
        #: Called (on a channel thread) when the server ends before it was shut down.
        self.on_lost: Callable[[], None] | None = None
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server_group = execnet.Group()
        try:
            self._listener.bind(self._path)
            self._listener.listen(64)
            spec = f"popen//id=forkserver//python={sys.executable}"
            gateway = self._server_group.makegateway(spec)
            package_parent = str(Path(__file__).resolve().parent.parent)
            self._channel = gateway.remote_exec(server_source(package_parent, self._path))
        except BaseException:
            self.shutdown(timeout=1.0)
            raise
        threading.Thread(
            target=self._accept_loop, name="parallel_exec-fork-accept", daemon=True
        ).start()
        self._channel.setcallback(self._on_message, endmarker=None)

    def fork(self, group: Any, worker_id: str, nice: int) -> tuple[Any, ForkedProcess]:
        """A gateway (a member of ``group``) to a new forked worker; blocks until the
        child has connected."""
        forked: Future[ForkedProcess] = Future()
        connected: Future[socket.socket] = Future()
        with self._lock:
            if self._closed:
                raise OSError("the fork server has stopped")
            self._forked[worker_id] = forked
            self._connected[worker_id] = connected
        self._channel.send(protocol.encode(protocol.ForkWorker(worker_id, nice, dict(os.environ))))
        process = forked.result(timeout=CONNECT_TIMEOUT)
        sock = connected.result(timeout=CONNECT_TIMEOUT)
        io = UnixSocketIO(sock, group.execmodel, process)
        return _register(group, io, worker_id), process

    def kill(self, worker_id: str) -> None:
        with contextlib.suppress(Exception):
            self._channel.send(protocol.encode(protocol.KillWorker(worker_id)))

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop accepting and end the server (after the workers' group has ended)."""
        self._fail_pending("the fork server has stopped")
        with contextlib.suppress(OSError):
            self._listener.close()
        with contextlib.suppress(Exception):
            self._server_group.terminate(timeout=timeout)
        shutil.rmtree(self._dir, ignore_errors=True)

    # ------------------------------------------------------------ threads

    def _fail_pending(self, reason: str, worker_id: str | None = None) -> None:
        with self._lock:
            if worker_id is None:
                self._closed = True
                futures: list[Future[Any]] = [*self._forked.values(), *self._connected.values()]
                self._forked.clear()
                self._connected.clear()
            else:
                futures = [
                    future
                    for future in (
                        self._forked.pop(worker_id, None),
                        self._connected.pop(worker_id, None),
                    )
                    if future is not None
                ]
        for future in futures:
            if not future.done():
                future.set_exception(OSError(reason))

    def _on_message(self, payload: bytes | None) -> None:
        if payload is None:  # the server is gone: nobody will report the rest
            unexpected = not self._closed
            self._fail_pending("the fork server has stopped")
            for process in list(self._processes.values()):
                process.orphan()
            if unexpected and self.on_lost is not None:
                self.on_lost()
            return
        message = protocol.decode(payload)
        if isinstance(message, protocol.WorkerForked):
            process = ForkedProcess(message.worker_id, message.pid, self)
            self._processes[message.worker_id] = process
            with self._lock:
                forked = self._forked.pop(message.worker_id, None)
            if forked is not None and not forked.done():
                forked.set_result(process)
        elif isinstance(message, protocol.WorkerExited):
            ended = self._processes.get(message.worker_id)
            if ended is not None:
                ended.ended(message.returncode)
            self._fail_pending(
                f"the forked worker exited with code {message.returncode} before connecting",
                message.worker_id,
            )
        elif isinstance(message, protocol.ForkFailed):
            self._fail_pending(f"fork failed: {message.error}", message.worker_id)

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            try:
                sock.settimeout(CONNECT_TIMEOUT)
                (size,) = NAME.unpack(read_exactly(sock, NAME.size))
                worker_id = read_exactly(sock, size).decode()
                sock.settimeout(None)
            except (OSError, EOFError, UnicodeDecodeError):
                sock.close()
                continue
            with self._lock:
                future = self._connected.pop(worker_id, None)
            if future is None or future.done():
                sock.close()
            else:
                future.set_result(sock)


#: How often an orphaned worker's process is looked at while waiting for its end.
ORPHAN_POLL_SECONDS = 0.05


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (not a zombie: an orphan's new parent may
    never reap it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[-1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    return state not in ("Z", "X")


def _register(group: Any, io: UnixSocketIO, worker_id: str) -> Any:
    """An execnet gateway on ``io``, a member of ``group`` like the ones it makes itself
    (so that ``exit`` and ``Group.terminate`` treat it the same way).  ``_register`` is
    how ``Group.makegateway`` itself adds a gateway."""
    import execnet
    from execnet.xspec import XSpec

    gateway = execnet.Gateway(io, XSpec(f"id={worker_id}"))
    group._register(gateway)
    return gateway
