"""The files a worker leaves as crash evidence, which do not depend on the worker:
the progress file, the results journal (``ResultJournal``) and the stdout/stderr files
(``read_excerpt``).

The progress file:

Thirty-two bytes, ``<qqdd``: the controller's index of the test in progress (-1
between tests), the size of the worker's stderr file when that test began, when it
began, and the test's own time limit (0: the run's ``--test-timeout``).  The worker
writes it; the controller (or a transport on the worker's machine) reads it after a
crash, at a Ctrl-C, and while the test runs (its guards).
"""

from __future__ import annotations

import os
import struct
import time
from typing import NamedTuple

PROGRESS_FORMAT = struct.Struct("<qqdd")
IDLE = -1


class ProgressEntry(NamedTuple):
    #: The controller's index of the test in progress (-1: none).
    test: int
    stderr_at: int
    started: float
    #: The test's own limit in seconds (0: the run's).
    limit: float


NOTHING = ProgressEntry(IDLE, 0, 0.0, 0.0)


class ProgressFile:
    """The controller's index of the test in progress (-1: none), where its stderr starts
    and when it started (``time.time()``).

    Written before and after every test with one ``pwrite`` (no flush needed: the
    kernel keeps it when the process dies), read by the controller after a crash.
    """

    def __init__(self, path: str, stderr_fd: int = 2) -> None:
        self._stderr_fd = stderr_fd
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.write(IDLE)

    def write(self, index: int, limit: float = 0.0) -> None:
        stderr_at = os.fstat(self._stderr_fd).st_size if index != IDLE else 0
        started = time.time() if index != IDLE else 0.0
        os.pwrite(self._fd, PROGRESS_FORMAT.pack(index, stderr_at, started, limit), 0)

    @staticmethod
    def read_full(path: str) -> ProgressEntry:
        """What the file says (``NOTHING`` when there is nothing to read)."""
        try:
            with open(path, "rb") as fh:
                data = fh.read(PROGRESS_FORMAT.size)
        except OSError:
            return NOTHING
        if len(data) != PROGRESS_FORMAT.size:
            return NOTHING
        index, stderr_at, started, limit = PROGRESS_FORMAT.unpack(data)
        return ProgressEntry(int(index), int(stderr_at), float(started), float(limit))

    @classmethod
    def read_entry(cls, path: str) -> tuple[int, int]:
        """``(index, stderr offset)``; ``(-1, 0)`` when there is nothing to read."""
        entry = cls.read_full(path)
        return entry.test, entry.stderr_at

    @classmethod
    def read(cls, path: str) -> int:
        return cls.read_entry(path)[0]


#: What is read of a worker's stderr as evidence: head and tail beyond this.
STDERR_EXCERPT_BYTES = 16000


def excerpt(data: bytes, limit: int = STDERR_EXCERPT_BYTES) -> str:
    """``data`` as text; when longer than ``limit``, its head and tail."""
    if len(data) > limit:
        head, tail = data[: limit // 4], data[-(limit - limit // 4) :]
        skipped = len(data) - len(head) - len(tail)
        data = head + f"\n[... {skipped} bytes not shown ...]\n".encode() + tail
    return data.decode("utf-8", "replace")


def read_from(path: str, start: int = 0) -> bytes:
    """The bytes of ``path`` from ``start`` (none when it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            return fh.read()
    except OSError:
        return b""


def read_excerpt(path: str, start: int = 0, limit: int = STDERR_EXCERPT_BYTES) -> str:
    """The text of ``path`` from ``start``; when longer than ``limit``, its head and tail."""
    return excerpt(read_from(path, start), limit)


class LeftBehind(NamedTuple):
    """What a worker's files say once it has ended (read where it ran)."""

    progress: ProgressEntry
    #: What it wrote to stderr since its test began, and altogether (excerpts).
    stderr_since_test: str
    stderr: str
    #: Tests it finished and had not sent (``ResultJournal``).
    finished: tuple[bytes, ...]


def left_behind(files_base: str) -> LeftBehind:
    """The evidence in a worker's files: its progress entry, stderr, results journal."""
    entry = ProgressFile.read_full(files_base + ".progress")
    data = read_from(files_base + ".err")
    return LeftBehind(
        entry,
        excerpt(data[entry.stderr_at :]),
        excerpt(data),
        ResultJournal.read(journal_path(files_base + ".progress")),
    )


class ResultJournal:
    """The finished tests a worker has not sent yet, on disk.

    A worker sends results in batches (at most ``FLUSH_INTERVAL`` late): a test that
    finished just before the next one crashed its worker would be lost with the batch,
    and run again elsewhere, with perhaps another outcome.  So each finished test's
    record is also appended here (one ``write``, length-prefixed; the kernel keeps it
    when the process dies) and the journal is emptied once a batch is sent; after a
    crash the controller reads what is left and reports those tests as they ran.
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        self._empty = True

    def append(self, payload: bytes) -> None:
        os.write(self._fd, len(payload).to_bytes(4, "little") + payload)
        self._empty = False

    def clear(self) -> None:
        """What it held has been sent."""
        if not self._empty:
            os.ftruncate(self._fd, 0)
            self._empty = True

    @staticmethod
    def read(path: str) -> tuple[bytes, ...]:
        """The complete records in the journal (a record cut short is left out)."""
        data = read_from(path)
        records, position = [], 0
        while position + 4 <= len(data):
            size = int.from_bytes(data[position : position + 4], "little")
            if position + 4 + size > len(data):
                break
            records.append(data[position + 4 : position + 4 + size])
            position += 4 + size
        return tuple(records)


def journal_path(progress_path: str) -> str:
    """The results journal beside a worker's progress file."""
    return progress_path.rsplit(".", 1)[0] + ".results"
