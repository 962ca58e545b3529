"""execnet over a connected Unix socket: how a forked worker and the pool talk.

Shared by both sides: the forked child serves its gateway on it, the pool drives that
gateway through it.  On the pool's side ``process`` answers ``wait`` and ``kill``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
from typing import Any, Protocol

#: How long ``Group.terminate`` waits for a worker's exit to be reported.
EXIT_WAIT = 30.0
#: The worker id a forked child sends first, length-prefixed.
NAME = struct.Struct("!H")


class Process(Protocol):
    def wait(self, timeout: float | None = None) -> int | None: ...

    def kill(self) -> None: ...


class UnixSocketIO:
    """execnet's IO interface (as its ``SocketIO``, which sets TCP-only options) on a
    connected Unix socket; ``process`` answers ``wait`` and ``kill`` on the pool's side."""

    def __init__(self, sock: socket.socket, execmodel: Any, process: Process | None) -> None:
        self.sock = sock
        self.execmodel = execmodel
        self.process = process
        self.remoteaddress = sock.getsockname()

    def read(self, numbytes: int) -> bytes:
        return read_exactly(self.sock, numbytes)

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_read(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)

    def close_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def wait(self) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:  # nobody told its end: do not hang on it
            return None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``sock``, or EOFError if the stream ends before.

    Received straight into one preallocated buffer: growing a ``bytes`` object with
    ``+=`` copies it on every chunk, quadratic in the message (a 100 MB report took
    seconds instead of a fraction of one)."""
    buf = bytearray(size)
    got = 0
    with memoryview(buf) as view:
        while got < size:
            count = sock.recv_into(view[got:], size - got)
            if not count:
                raise EOFError(f"expected {size} bytes, got {got}")
            got += count
    return bytes(buf)
