"""``read_exactly``: how the controller reads a forked worker's messages off its socket.

A worker's report arrives in many small ``recv`` chunks; reading it must stay linear in
its size (a 100 MB captured output once took ~20 s to read) and must end with EOFError,
not a short message, when the worker goes away mid-message.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from parallel_exec.controller import forkserver
from parallel_exec.wire.socket_io import read_exactly

pytestmark = pytest.mark.skipif(not forkserver.available(), reason="needs Unix sockets")

#: Large enough that a quadratic read copies gigabytes (and takes seconds).
PAYLOAD_SIZE = 32 * 1024 * 1024
#: What the writer sends per ``send``, so the reader gets many small chunks.
CHUNK = 4096


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    reader, writer = socket.socketpair()
    # A small receive buffer keeps each ``recv`` short, as a busy worker's stream is.
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CHUNK)
    try:
        yield reader, writer
    finally:
        reader.close()
        writer.close()


def send_in_chunks(sock: socket.socket, data: bytes, close: bool) -> threading.Thread:
    def run() -> None:
        view = memoryview(data)
        for start in range(0, len(data), CHUNK):
            sock.sendall(view[start : start + CHUNK])
        if close:
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_reads_a_large_payload_sent_in_small_chunks(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = pair
    payload = bytes(range(256)) * (PAYLOAD_SIZE // 256) + b"tail"
    trailer = b"next message"
    thread = send_in_chunks(writer, payload + trailer, close=True)
    started = time.perf_counter()
    got = read_exactly(reader, len(payload))
    elapsed = time.perf_counter() - started
    thread.join(timeout=30)
    print(f"read {len(payload) / 1e6:.0f} MB in {elapsed:.3f}s")
    assert type(got) is bytes
    assert len(got) == len(payload)
    assert got == payload
    # Nothing past the requested size was consumed.
    assert read_exactly(reader, len(trailer)) == trailer


def test_short_stream_is_eof(pair: tuple[socket.socket, socket.socket]) -> None:
    reader, writer = pair
    thread = send_in_chunks(writer, b"x" * (3 * CHUNK + 5), close=True)
    with pytest.raises(EOFError, match=f"expected {4 * CHUNK} bytes, got {3 * CHUNK + 5}"):
        read_exactly(reader, 4 * CHUNK)
    thread.join(timeout=30)


def test_zero_bytes_reads_nothing(pair: tuple[socket.socket, socket.socket]) -> None:
    reader, _ = pair
    assert read_exactly(reader, 0) == b""
