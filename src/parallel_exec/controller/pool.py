"""The worker pool: the only module that drives worker processes (spawning them through
execnet, having ``forkserver`` fork them, or having a remote machine's agent start
them: ``remote``).

It starts workers concurrently (a new interpreter costs a few hundred milliseconds of
CPU, and paying that one worker after another is most of what a small parallel run
costs), delivers every message a worker sends to one thread-safe inbox as a
``PoolEvent``, and owns the per-worker files that survive a crash: stdout, stderr and
the progress file.
"""

from __future__ import annotations

import contextlib
import enum
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import execnet

from ..wire import protocol
from ..wire.progress import NOTHING, ProgressEntry, read_from
from . import forkserver
from .transports import (
    CrashEvidence,
    ForkServerTransport,
    SpawnTransport,
    Transport,
    WorkerProcess,
)

if TYPE_CHECKING:
    from .remote import RemoteHost

TAIL_POLL_SECONDS = 0.05
#: The place of a worker that has nowhere to run (every machine it could use is lost).
NOWHERE = -1


class WorkerState(enum.Enum):
    STARTING = "starting"
    COLLECTING = "collecting"
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"
    CRASHED = "crashed"


@dataclass(frozen=True)
class Received:
    """A decoded protocol message from a worker."""

    worker_id: str
    message: protocol.WorkerMessage
    #: Classes in the message this process could not import, replaced by stand-ins
    #: (``protocol.Unresolved``) whose repr names them.
    unresolved: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChannelClosed:
    """A worker's channel closed: it ended normally, or it died."""

    worker_id: str


@dataclass(frozen=True)
class OutputLine:
    """A line a worker wrote to its stdout or stderr outside pytest's capture."""

    worker_id: str
    stream: str
    text: str


@dataclass(frozen=True)
class StartFailed:
    worker_id: str
    error: str


@dataclass(frozen=True)
class ForkServerLost:
    """The fork server ended during the run: its workers go on (they watch the
    controller, not it), their exit statuses are unknown, new workers are spawned."""


PoolEvent = Received | ChannelClosed | OutputLine | StartFailed | ForkServerLost


class Pool(Protocol):
    """What the dispatcher needs of a pool: start, talk to and end workers, and the
    evidence a worker left when it ended, as data.  ``WorkerPool`` is the real one."""

    inbox: queue.SimpleQueue[PoolEvent]
    workers: dict[str, WorkerHandle]
    run_dir: str

    def next_worker_id(self) -> str: ...

    def start(self, worker_ids: list[str], nice: int = 0) -> None: ...

    def send(self, worker_id: str, message: protocol.ControllerMessage) -> bool: ...

    def alive(self) -> list[WorkerHandle]: ...

    def release(self, worker_id: str) -> None: ...

    def kill(self, worker_id: str) -> None: ...

    def signal(self, worker_id: str, signum: int, group: bool = False) -> None: ...

    def shutdown(self, timeout: float = 5.0) -> None: ...

    def stream_output(self, stdout: bool) -> None: ...

    def crash_evidence(self, worker_id: str) -> CrashEvidence: ...

    def stderr_excerpt(self, worker_id: str) -> str: ...

    def progress(self, worker_id: str) -> ProgressEntry: ...

    def memory(self, worker_id: str) -> int: ...


@dataclass
class WorkerHandle:
    worker_id: str
    files_base: str
    state: WorkerState = WorkerState.STARTING
    gateway: Any = None
    channel: Any = None
    pid: int | None = None
    #: ``subprocess.Popen`` (spawned), ``ForkedProcess`` (forked), ``RemoteProcess``.
    process: WorkerProcess | None = None
    #: Where it runs (an index into the pool's places) and the transport that started
    #: it (None: not started yet).
    place: int = 0
    transport: Transport | None = None
    exit_code: int | None = None
    offsets: dict[str, int] = field(default_factory=lambda: {".out": 0, ".err": 0})

    @property
    def progress_path(self) -> str:
        return self.files_base + ".progress"


@dataclass
class Place:
    """Where workers run: this machine, or one remote machine.  ``transports`` are
    tried in order; ``capacity``: how many workers run there at once (None: any)."""

    name: str
    transports: list[Transport]
    capacity: int | None = None
    host: RemoteHost | None = None

    @property
    def usable(self) -> bool:
        return self.host is None or self.host.usable

    @property
    def spec(self) -> str:
        """execnet's spec of this place, as xdist gives it to plugins (without the
        worker's ``//id=``)."""
        return self.host.spec.gateway_spec if self.host is not None else "popen"


class WorkerPool:
    """``fork_server``: start workers by forking them from it (see ``forkserver``)
    instead of spawning a new interpreter for each; the pool owns it from then on.
    ``hosts``: remote machines (connected) whose agents start ``spec.count`` workers
    each, beside ``local`` workers here (None: every worker is local)."""

    def __init__(
        self,
        make_setup: Callable[[str, str, str], protocol.WorkerSetup],
        fork_server: forkserver.ForkServer | None = None,
        hosts: list[RemoteHost] | None = None,
        local: int | None = None,
    ) -> None:
        self._make_setup = make_setup
        self._group = execnet.Group()
        self.inbox: queue.SimpleQueue[PoolEvent] = queue.SimpleQueue()
        self.workers: dict[str, WorkerHandle] = {}
        self.run_dir = tempfile.mkdtemp(prefix="parallel_exec-")
        self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="parallel_exec")
        self._tail_stop = threading.Event()
        self._tail_thread: threading.Thread | None = None
        self._tail_suffixes: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self._serial = 0
        #: Tried in order: a worker is forked if the fork server can, else spawned (the
        #: run never depends on the fork server).
        here: list[Transport] = [SpawnTransport()]
        if fork_server is not None:
            fork_server.on_lost = lambda: self.inbox.put(ForkServerLost())
            here.insert(0, ForkServerTransport(fork_server))
        self.places = [Place("local", here, local if hosts else None)]
        for host in hosts or ():
            from .remote import RemoteTransport

            host.on_output = self._remote_output
            transports: list[Transport] = [RemoteTransport(host)] if host.usable else []
            self.places.append(Place(host.name, transports, host.spec.count, host))
        self._partial: dict[tuple[str, str], str] = {}
        self._output_lock = threading.Lock()

    # ------------------------------------------------------------ start

    def next_worker_id(self) -> str:
        with self._lock:
            worker_id = f"gw{self._serial}"
            self._serial += 1
        return worker_id

    def start(self, worker_ids: list[str], nice: int = 0) -> None:
        """Start workers concurrently; each reports back through ``inbox``.  ``nice``: a
        lower CPU priority (POSIX niceness increment) for these processes."""
        for worker_id in worker_ids:
            handle = WorkerHandle(worker_id, os.path.join(self.run_dir, worker_id))
            handle.place = self._place_for_next()
            self.workers[worker_id] = handle
            # Made here, on the caller's thread: it calls plugins' hooks
            # (``pytest_configure_node``), which expect pytest's main thread.
            place = self.places[handle.place] if handle.place != NOWHERE else None
            setup = self._make_setup(
                handle.worker_id, handle.progress_path, place.spec if place else "popen"
            )
            self._executor.submit(self._start_one, handle, setup, nice)

    def _start_one(self, handle: WorkerHandle, setup: protocol.WorkerSetup, nice: int = 0) -> None:
        try:
            gateway, source = self._open(handle, nice)
            channel = gateway.remote_exec(source)
            handle.gateway, handle.channel = gateway, channel
            channel.setcallback(
                lambda payload: self._deliver(handle.worker_id, payload),
                endmarker=None,
            )
            channel.send(protocol.encode(setup))
        except Exception as exc:
            self.inbox.put(StartFailed(handle.worker_id, f"{type(exc).__name__}: {exc}"))

    def _place_for_next(self) -> int:
        """Where the next worker runs: the first usable place with room (in the order of
        the command line, this machine first); when none has room (a machine was
        lost), the usable place running the fewest."""
        live: dict[int, int] = {}
        for handle in self.alive():
            live[handle.place] = live.get(handle.place, 0) + 1
        usable = [
            i
            for i, place in enumerate(self.places)
            if place.usable and place.transports and place.capacity != 0
        ]
        for i in usable:
            capacity = self.places[i].capacity
            if capacity is None or live.get(i, 0) < capacity:
                return i
        return min(usable, key=lambda i: live.get(i, 0)) if usable else NOWHERE

    def _open(self, handle: WorkerHandle, nice: int) -> tuple[Any, str]:
        """Start the worker's process with the first transport of its place that can."""
        if handle.place == NOWHERE:
            lost = "; ".join(
                f"{p.name}: {p.host.lost or p.host.error}" for p in self.places if p.host
            )
            raise ConnectionError(f"no machine is left to start a worker on ({lost})")
        place = self.places[handle.place]
        last = place.transports[-1]
        for transport in place.transports:
            try:
                gateway, handle.process, source = transport.open(
                    self._group, handle.worker_id, nice
                )
            except Exception:
                if transport is last:
                    raise
                continue
            handle.transport = transport
            return gateway, source
        raise AssertionError("unreachable: the last transport raises")

    def _deliver(self, worker_id: str, payload: bytes | None) -> None:
        if payload is None:
            self.inbox.put(ChannelClosed(worker_id))
            return
        try:
            message, unresolved = protocol.decode_tolerant(payload)
        except Exception as exc:
            # A corrupted stream is the worker's death, not ours; it is killed before its
            # tests are handed to others, so that none of them can run twice.
            self.kill(worker_id)
            self.inbox.put(
                StartFailed(worker_id, f"undecodable message ({type(exc).__name__}: {exc})")
            )
            return
        self.inbox.put(Received(worker_id, message, unresolved))  # type: ignore[arg-type]

    # ------------------------------------------------------------ talk

    def send(self, worker_id: str, message: protocol.ControllerMessage) -> bool:
        handle = self.workers.get(worker_id)
        if handle is None or handle.channel is None:
            return False
        try:
            handle.channel.send(protocol.encode(message))
        except Exception:
            return False
        return True

    def alive(self) -> list[WorkerHandle]:
        return [
            h
            for h in self.workers.values()
            if h.state not in (WorkerState.FINISHED, WorkerState.CRASHED)
        ]

    def crash_evidence(self, worker_id: str) -> CrashEvidence:
        """What an ended worker left, gathered by its transport: its exit status, the
        test it was running, what it wrote to stderr."""
        handle = self.workers[worker_id]
        transport = handle.transport
        if transport is None:  # it never started
            return CrashEvidence(None, "", -1, "", "")
        evidence = transport.evidence(handle, wait=2.0)
        handle.exit_code = evidence.exit_code
        return evidence

    def stderr_excerpt(self, worker_id: str) -> str:
        """What the worker wrote to stderr (head and tail when long)."""
        handle = self.workers[worker_id]
        return handle.transport.stderr(handle) if handle.transport else ""

    def progress(self, worker_id: str) -> ProgressEntry:
        """The test the worker runs (its canonical index, -1: none), since when, and its
        own time limit."""
        handle = self.workers[worker_id]
        if handle.transport is None:  # it never started
            return NOTHING
        return handle.transport.running(handle)

    # ------------------------------------------------------------ output

    def stream_output(self, stdout: bool) -> None:
        """Forward what workers write outside pytest's capture as ``OutputLine`` events:
        their standard error always (a ``faulthandler_timeout`` dump, a plugin's
        banner), their standard output only when asked (``-s``)."""
        self._tail_suffixes = (".out", ".err") if stdout else (".err",)
        self._tail_thread = threading.Thread(
            target=self._tail_loop, name="parallel_exec-output", daemon=True
        )
        self._tail_thread.start()

    def _tail_loop(self) -> None:
        while not self._tail_stop.wait(TAIL_POLL_SECONDS):
            self.drain_output()
        self.drain_output(final=True)

    def _remote_output(self, worker_id: str, stream: str, data: bytes, final: bool) -> None:
        """What a remote worker wrote, as its agent sent it."""
        suffix = ".out" if stream == "stdout" else ".err"
        if suffix in self._tail_suffixes:
            self._lines(worker_id, suffix, data, final)

    def _lines(self, worker_id: str, suffix: str, data: bytes, final: bool) -> None:
        """Complete lines of ``data`` (after what was left of the last piece) as events."""
        key = (worker_id, suffix)
        with self._output_lock:
            text = self._partial.pop(key, "") + data.decode("utf-8", "replace")
            lines = text.split("\n")
            rest = lines.pop()
            if rest:
                if final:
                    lines.append(rest)
                else:
                    self._partial[key] = rest
            stream = "stdout" if suffix == ".out" else "stderr"
            for line in lines:
                self.inbox.put(OutputLine(worker_id, stream, line))

    def drain_output(self, final: bool = False) -> None:
        for handle in list(self.workers.values()):
            if handle.transport is not None and not handle.transport.local:
                continue  # its agent sends what it writes
            for suffix in self._tail_suffixes:
                data = read_from(handle.files_base + suffix, handle.offsets[suffix])
                if not data:
                    continue
                handle.offsets[suffix] += len(data)
                self._lines(handle.worker_id, suffix, data, final)

    # ------------------------------------------------------------ stop

    def release(self, worker_id: str) -> None:
        """The worker has finished its session: let its process exit now, not at the end."""
        handle = self.workers.get(worker_id)
        if handle is not None and handle.transport is not None:
            handle.transport.release(handle)

    def kill(self, worker_id: str) -> None:
        handle = self.workers.get(worker_id)
        if handle is not None and handle.transport is not None:
            handle.transport.kill(handle)

    def signal(self, worker_id: str, signum: int, group: bool = False) -> None:
        """Send a signal to a live worker (its stacks), or to its process group (a
        SIGTERM: the test's processes too); SIGKILL is ``kill``."""
        handle = self.workers.get(worker_id)
        if handle is not None and handle.transport is not None:
            handle.transport.signal(handle, signum, group)

    def memory(self, worker_id: str) -> int:
        """Resident memory of the worker and the processes it started (0: unknown)."""
        handle = self.workers.get(worker_id)
        if handle is None or handle.transport is None:
            return 0
        return handle.transport.memory(handle)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every worker: a clean exit where possible, a kill after ``timeout``."""
        self._executor.shutdown(wait=True)
        if self._tail_thread is not None:
            self._tail_stop.set()
            self._tail_thread.join(timeout=2.0)
        with contextlib.suppress(Exception):
            self._group.terminate(timeout=timeout)
        # A released worker has left the group (execnet does not wait for it): it may
        # still be running its exit handlers.  Wait for it, within the same bound.
        deadline = time.monotonic() + timeout
        for handle in self.workers.values():
            if handle.process is not None:
                with contextlib.suppress(Exception):
                    handle.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        for worker_id in list(self.workers):
            self.kill(worker_id)  # and what its tests left in its process group
        for place in self.places:
            for transport in place.transports:
                transport.close(timeout)
            if place.host is not None:
                place.host.close(timeout)
        shutil.rmtree(self.run_dir, ignore_errors=True)
