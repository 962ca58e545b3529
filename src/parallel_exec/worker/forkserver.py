"""The fork server process: fork a worker per request, reap, report exits, kill.

It is an execnet popen gateway that imports pytest and the worker side once; each child
drops what it must not inherit (the server's pipes, its ``atexit`` handlers, its
environment), connects to the pool's Unix socket and serves an execnet gateway there, so
that from then on a forked worker is driven exactly like a spawned one.  The pool's side
is ``controller/forkserver.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import signal
import socket
import sys
import traceback
import warnings
from typing import Any

from execnet import gateway_base

from .._pytest_compat import builtin_plugin_modules
from ..wire import protocol
from ..wire.socket_io import NAME, UnixSocketIO

#: How often the fork server looks for exited children while no request comes in.
REAP_SECONDS = 0.02


def _preimport() -> None:
    """Import what every worker imports before it reads its set-up: pytest, its
    built-in plugins and the worker side.  Nothing of the user's is imported here."""
    import pytest  # noqa: F401

    for module in builtin_plugin_modules():
        with contextlib.suppress(Exception):
            __import__(module)
    from . import main, session  # noqa: F401

    # What is here now is shared by every child: keep their garbage collections (pytest
    # runs two at the end of each session) from walking it.
    gc.freeze()


def serve(channel: Any, path: str) -> None:
    """The fork server's loop: fork on request, reap, report exits, kill on request."""
    # The controller owns Ctrl-C.  A no-op handler rather than SIG_IGN, which would
    # survive exec in whatever a test of a forked worker starts (see main.ignore_interrupts).
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    _preimport()
    io = channel.gateway._io
    inherited = [f.fileno() for f in (io.infile, io.outfile)]
    children: dict[int, str] = {}
    while True:
        try:
            payload = channel.receive(timeout=REAP_SECONDS if children else None)
        except channel.TimeoutError:
            payload = b""
        except EOFError:
            return
        _reap(channel, children)
        if payload is None:
            return
        if not payload:
            continue
        request = protocol.decode(payload)
        if isinstance(request, protocol.ForkWorker):
            _fork(channel, request, path, inherited, children)
        elif isinstance(request, protocol.KillWorker):
            for pid, worker_id in children.items():
                if worker_id == request.worker_id:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)


def _reap(channel: Any, children: dict[int, str]) -> None:
    for pid in list(children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            worker_id = children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            channel.send(protocol.encode(protocol.WorkerExited(worker_id, code)))


def _fork(
    channel: Any,
    request: protocol.ForkWorker,
    path: str,
    inherited: list[int],
    children: dict[int, str],
) -> None:
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a process with threads (here execnet's
            # receiver) may deadlock the child on a lock held at that moment.  The child
            # takes no lock of the server's: it builds its own gateway and leaves with
            # os._exit.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as exc:
        channel.send(protocol.encode(protocol.ForkFailed(request.worker_id, str(exc))))
        return
    if pid == 0:
        code = 70
        try:
            code = _child(request, path, inherited)
        except BaseException:
            with contextlib.suppress(Exception):
                traceback.print_exc()
        finally:
            os._exit(code)
    children[pid] = request.worker_id
    channel.send(protocol.encode(protocol.WorkerForked(request.worker_id, pid)))


def _child(request: protocol.ForkWorker, path: str, inherited: list[int]) -> int:
    """A forked worker: become a process of its own, then serve a gateway to the pool.

    Returns the exit code; the caller leaves with ``os._exit`` so that nothing of the
    fork server's (its gateway, its finalizers) runs here.
    """
    atexit._clear()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in inherited:  # the numbers stay taken: the server's file objects own them
        os.dup2(devnull, fd)
    os.close(devnull)
    os.environ.clear()
    os.environ.update(request.environ)
    if request.nice and hasattr(os, "nice"):
        os.nice(request.nice)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    name = request.worker_id.encode()
    sock.sendall(NAME.pack(len(name)) + name)
    execmodel = gateway_base.get_execmodel("thread")
    gateway_base.serve(UnixSocketIO(sock, execmodel, None), id=f"{request.worker_id}-worker")
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return 0
