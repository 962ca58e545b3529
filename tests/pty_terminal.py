"""Run a command on a pseudo-terminal and read what it draws through a terminal
emulator (pyte): for the live status's acceptance test and for the README's
screenshot (``docs/make_screenshots.py``)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import termios
import time
from collections.abc import Callable

import pyte


def run_on_terminal(
    command: list[str],
    cwd: str,
    look: Callable[[pyte.Screen, int], None],
    columns: int = 80,
    rows: int = 24,
    term: str = "xterm",
    timeout: float = 120,
    every: float = 0.1,
) -> pyte.Screen:
    """Run ``command`` in ``cwd`` on a terminal of ``columns`` x ``rows``; ``look(screen,
    pid)`` sees the screen every ``every`` seconds while it runs.  The final screen."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the run
        os.chdir(cwd)
        os.environ.update({"TERM": term, "COLUMNS": str(columns), "LINES": str(rows)})
        os.execvp(command[0], command)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    screen = pyte.Screen(columns, rows)
    stream = pyte.ByteStream(screen)
    deadline = time.monotonic() + timeout
    next_look = 0.0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            stream.feed(chunk)
        if time.monotonic() >= next_look:
            next_look = time.monotonic() + every
            look(screen, pid)
    os.waitpid(pid, 0)
    os.close(fd)
    return screen


def text_of(screen: pyte.Screen) -> list[str]:
    return [line.rstrip() for line in screen.display]
