"""Workers on other machines: ``--tx socket=HOST:PORT`` and ``--tx ssh=[USER@]HOST``.

A ``RemoteHost`` is the controller's connection to one machine: an execnet gateway
running the agent (``worker/agent.py``), the agent's ``AgentHello`` (its Python, CPUs,
directory: the header shows them), and what the agent sends about each worker it
started (progress, output, memory, exit status).  ``RemoteTransport`` starts workers
through it and answers the pool from that data, so no path of the remote machine is
ever opened here.  When the connection is lost, the host says why; its workers' tests
are failed as crashed with that reason and the run goes on on the other workers.

Security: execnet's socket server runs whatever code reaches it, and the controller
unpickles what workers send; a remote machine is as trusted as the controller (see
docs/remote.md).
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import execnet

from .._version import __version__
from ..settings import TxSpec
from ..wire import remote
from ..wire.progress import NOTHING, ProgressEntry, excerpt
from .transports import CrashEvidence, Worker, WorkerProcess

#: How long connecting to a machine and starting its agent may take.
CONNECT_SECONDS = 60.0
#: Kept of a remote worker's stderr (the start and the most recent part).
STDERR_KEPT_BYTES = 1 << 20

#: Output of a remote worker: ``(worker id, "stdout" or "stderr", bytes, final)``.
OutputSink = Callable[[str, str, bytes, bool], None]


@dataclass
class Seen:
    """What the controller knows of a remote worker, from its agent's updates."""

    progress: ProgressEntry = NOTHING
    stderr: bytearray = field(default_factory=bytearray)
    #: Bytes of its stderr dropped from the middle of ``stderr`` (kept small).
    dropped: int = 0
    rss: int = 0
    exit_code: int | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    evidence: queue.SimpleQueue[remote.Evidence] = field(default_factory=queue.SimpleQueue)
    start_error: str = ""

    def add_stderr(self, data: bytes) -> None:
        self.stderr += data
        if len(self.stderr) > STDERR_KEPT_BYTES:
            cut = len(self.stderr) - STDERR_KEPT_BYTES // 2
            head = STDERR_KEPT_BYTES // 8
            del self.stderr[head:cut]
            self.dropped += cut - head

    def stderr_since(self, offset: int) -> bytes:
        """What it wrote from ``offset`` of its stderr (what is still kept of it)."""
        head = STDERR_KEPT_BYTES // 8
        if not self.dropped or offset <= head:
            return bytes(self.stderr[offset:])
        return bytes(self.stderr[max(head, offset - self.dropped) :])


class RemoteHost:
    """One remote machine, its agent and what the agent said."""

    def __init__(self, spec: TxSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.group = execnet.Group()
        self.gateway: Any = None
        self.channel: Any = None
        self.hello: remote.AgentHello | None = None
        #: Why no worker can start there (unreachable, refused); "": usable.
        self.error = ""
        #: Why the connection was lost during the run; "": not lost.
        self.lost = ""
        self.seen: dict[str, Seen] = {}
        self.on_output: OutputSink | None = None
        self._lock = threading.Lock()

    @property
    def usable(self) -> bool:
        return self.hello is not None and not self.error and not self.lost

    def connect(self, stdout: bool, memory: bool, timeout: float = CONNECT_SECONDS) -> None:
        """Open the gateway, start the agent, read its hello; ``error`` says why not."""
        try:
            self.gateway = self.group.makegateway(self.spec.gateway_spec)
            self.channel = self.gateway.remote_exec(remote.AGENT_SOURCE)
            self.channel.send(
                remote.encode(remote.AgentSetup(__version__, stdout=stdout, memory=memory))
            )
            hello = remote.decode(self.channel.receive(timeout=timeout))
        except Exception as exc:
            self.error = unreachable_reason(exc)
            self.close(1.0)
            return
        if not isinstance(hello, remote.AgentHello):
            self.error = f"its agent answered {type(hello).__name__}, not a hello"
            self.close(1.0)
            return
        self.hello = hello
        mismatch = remote.agent_mismatch(hello, sys.version_info[:2], __version__)
        if mismatch is not None:
            self.error = f"it does not run what the controller runs ({mismatch})"
            self.close(1.0)
            return
        self.channel.setcallback(self._on_message, endmarker=None)

    def describe(self) -> str:
        """The header's line for this machine."""
        if self.hello is None or self.error:
            return f"parallel_exec: {self.name}: {self.error}; its workers do not start"
        hello = self.hello
        workers = f"{self.spec.count} worker{'s' if self.spec.count != 1 else ''}"
        return (
            f"parallel_exec: {self.name}: {workers} on {hello.hostname} "
            f"({hello.cpus} CPU{'s' if hello.cpus != 1 else ''}, Python {hello.python} "
            f"{hello.platform}), in {hello.cwd}"
        )

    # ------------------------------------------------------------ agent messages

    def _on_message(self, payload: bytes | None) -> None:
        if payload is None:
            if not self.lost:
                self.lost = "its connection closed"
                with contextlib.suppress(Exception):
                    error = self.channel._getremoteerror()
                    if error:
                        self.lost += f" ({str(error).strip().splitlines()[-1]})"
            for seen in self.seen.values():
                seen.ended.set()
            return
        message = remote.decode(payload)
        seen = self.worker(getattr(message, "worker_id", ""))
        if isinstance(message, remote.WorkerUpdate):
            seen.progress = message.progress
            if message.rss:
                seen.rss = message.rss
            if message.stderr:
                seen.add_stderr(message.stderr)
            sink = self.on_output
            if sink is not None:
                if message.stdout:
                    sink(message.worker_id, "stdout", message.stdout, message.ended)
                if message.stderr or message.ended:
                    sink(message.worker_id, "stderr", message.stderr, message.ended)
            if message.ended:
                seen.exit_code = message.exit_code
                seen.ended.set()
        elif isinstance(message, remote.Evidence):
            seen.evidence.put(message)
        elif isinstance(message, remote.StartError):
            seen.start_error = message.error

    def worker(self, worker_id: str) -> Seen:
        with self._lock:
            seen = self.seen.get(worker_id)
            if seen is None:
                seen = self.seen[worker_id] = Seen()
            return seen

    def request(self, message: remote.AgentRequest) -> bool:
        if self.channel is None or self.lost:
            return False
        try:
            self.channel.send(remote.encode(message))
        except Exception as exc:
            self.lost = self.lost or f"its connection closed ({type(exc).__name__})"
            return False
        return True

    def answer(self, seen: Seen, timeout: float) -> remote.Evidence | None:
        """The agent's answer to ``GatherEvidence`` (None: none came, the machine is gone)."""
        deadline = time.monotonic() + timeout
        while not self.lost and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                return seen.evidence.get(timeout=0.1)
        return None

    def close(self, timeout: float) -> None:
        """End the agent (it ends its workers and removes its files)."""
        with contextlib.suppress(Exception):
            self.group.terminate(timeout=timeout)
        # execnet shuts a socket gateway's connection down but leaves it open.
        with contextlib.suppress(Exception):
            self.gateway._io.sock.close()


def unreachable_reason(exc: BaseException) -> str:
    """Why a machine could not be used, in one line."""
    text = str(exc).strip().splitlines()
    last = text[-1] if text else ""
    if "No module named 'parallel_exec" in last:
        return (
            f"parallel_exec is not importable there ({last}); install parallel_exec "
            f"{__version__} into the Python it runs"
        )
    return (
        f"unreachable ({type(exc).__name__}: {last})"
        if last
        else f"unreachable ({type(exc).__name__})"
    )


def connect_all(specs: list[TxSpec], stdout: bool, memory: bool) -> list[RemoteHost]:
    """Connect to every machine at once (a slow one does not hold the others up)."""
    hosts = [RemoteHost(spec) for spec in specs]
    threads = [
        threading.Thread(target=host.connect, args=(stdout, memory), daemon=True) for host in hosts
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CONNECT_SECONDS + 5.0)
    for host in hosts:
        if host.hello is None and not host.error:
            host.error = f"no answer within {CONNECT_SECONDS:.0f} s"
    return hosts


class RemoteProcess:
    """A remote worker's process, as far as the pool needs it; its agent acts on it."""

    def __init__(self, host: RemoteHost, worker_id: str) -> None:
        self.host = host
        self.worker_id = worker_id
        self.seen = host.worker(worker_id)

    def poll(self) -> int | None:
        return self.seen.exit_code

    def wait(self, timeout: float | None = None) -> int | None:
        self.seen.ended.wait(timeout)
        return self.seen.exit_code

    def kill(self) -> None:
        self.host.request(remote.KillWorker(self.worker_id))


class RemoteTransport:
    """Workers started by the agent of one remote machine."""

    local = False

    def __init__(self, host: RemoteHost) -> None:
        self.host = host
        self.name = host.name
        assert host.hello is not None
        #: The Python its workers run (their handshake is compared with it).
        self.python = host.hello.python

    def open(self, group: Any, worker_id: str, nice: int) -> tuple[Any, WorkerProcess, str]:
        if not self.host.usable:
            raise ConnectionError(f"{self.name}: {self.host.lost or self.host.error}")
        return (
            self.host.gateway,
            RemoteProcess(self.host, worker_id),
            remote.relay_source(worker_id, nice),
        )

    def close(self, timeout: float) -> None:
        """Nothing of its own: the pool closes the machine's connection (it owns it)."""

    def running(self, worker: Worker) -> ProgressEntry:
        return self.host.worker(worker.worker_id).progress

    def kill(self, worker: Worker) -> None:
        self.host.request(remote.KillWorker(worker.worker_id))

    def signal(self, worker: Worker, signum: int, group: bool) -> None:
        self.host.request(remote.SignalWorker(worker.worker_id, signum, group))

    def memory(self, worker: Worker) -> int:
        return self.host.worker(worker.worker_id).rss

    def stderr(self, worker: Worker) -> str:
        return excerpt(bytes(self.host.worker(worker.worker_id).stderr))

    def release(self, worker: Worker) -> None:
        self.host.request(remote.ReleaseWorker(worker.worker_id))

    def evidence(self, worker: Worker, wait: float) -> CrashEvidence:
        """Asked of the agent (it waits for the worker's end and reads its files there);
        from what it sent before when the machine is gone."""
        seen = self.host.worker(worker.worker_id)
        found = None
        if self.host.request(remote.GatherEvidence(worker.worker_id, wait)):
            found = self.host.answer(seen, wait + 5.0)
        if found is not None:
            return CrashEvidence(
                exit_code=found.exit_code,
                note=self._note(seen),
                running=found.progress.test,
                stderr_since_test=found.stderr_since_test,
                stderr=found.stderr,
                started=found.progress.started,
                finished=found.finished,
            )
        return CrashEvidence(
            exit_code=seen.exit_code,
            note=self._note(seen),
            running=seen.progress.test,
            stderr_since_test=excerpt(seen.stderr_since(seen.progress.stderr_at)),
            stderr=excerpt(bytes(seen.stderr)),
            started=seen.progress.started,
        )

    def _note(self, seen: Seen) -> str:
        if seen.start_error:
            return f"it could not start on {self.name}: {seen.start_error}"
        if self.host.lost:
            return f"it ran on {self.name}, whose connection was lost: {self.host.lost}"
        return f"it ran on {self.name}"
