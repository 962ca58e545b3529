"""Showing the run while it goes: the live status on a terminal, plain progress lines
in a log.

``LiveStatus`` draws a status area at the bottom of a terminal (tests done / total with
a bar, outcomes so far, elapsed, ETA, one line per worker with its test and how long it
has run) that pytest's own output scrolls above.  It stands between pytest's terminal
writer and its file: what pytest writes is held and written out, above the status,
when the status is redrawn (on ``events.Tick``, at most ten times a second, only on the
main thread), so the screen does not flicker and nothing is reordered.  The status is
erased, and the writer's file given back, when the run loop ends (before pytest's
summary), also after Ctrl-C.

``ProgressLines`` prints ``parallel_exec: 812/2000 done, 3 failed, ETA 1m40s`` every
``every`` seconds where the status is not drawn (a log, a pipe): with ``-v`` or
``--progress-every``, so default CI logs do not change.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from .. import events
from ..progress import RunProgress

#: At most this many redraws a second.
REDRAW_SECONDS = 0.1
#: Plugins that draw on the terminal's line themselves: no live status with them.
TERMINAL_OWNERS = ("sugar", "pytest_sugar", "rich", "pytest_rich", "pytest-rich")

ERASE_BELOW = "\x1b[J"


def live_wanted(
    file: Any, *, asked: bool, capture_off: bool, environ: dict[str, str] | None = None
) -> bool:
    """Whether to draw the live status: asked (not ``--no-live``), on a terminal that
    can (a TTY, not ``TERM=dumb``), and not with ``-s`` (worker output streams there)."""
    environ = dict(os.environ) if environ is None else environ
    if not asked or capture_off or environ.get("TERM", "") == "dumb":
        return False
    try:
        return bool(file is not None and file.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class HeldFile:
    """Stands for the terminal writer's file while the status is drawn: what pytest
    writes is kept until the next redraw."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.held: list[str] = []

    def write(self, text: str) -> int:
        self.held.append(text)
        return len(text)

    def flush(self) -> None:
        """Held until the next redraw (at most ``REDRAW_SECONDS``)."""

    def isatty(self) -> bool:
        return True

    def take(self) -> str:
        text = "".join(self.held)
        self.held.clear()
        return text

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


class LiveStatus:
    """Consumer: the live status on a terminal (see the module's docstring).
    ``get_file``/``set_file`` read and replace the terminal writer's file."""

    description = "the live status"

    def __init__(
        self,
        progress: RunProgress,
        get_file: Callable[[], Any],
        set_file: Callable[[Any], None],
        size: Callable[[], os.terminal_size] = shutil.get_terminal_size,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.progress = progress
        self._get_file = get_file
        self._set_file = set_file
        self._size = size
        self._clock = clock
        self._held: HeldFile | None = None
        self._out: Any = None
        #: Rows the drawn status spans above the cursor (None: nothing drawn).
        self._rows_up: int | None = None
        #: What pytest wrote after its last newline (the status is drawn below it).
        self._partial = ""
        self._last_draw = 0.0
        self._ended = False

    def __call__(self, event: events.RunEvent) -> None:
        self.progress(event)
        if self._ended:
            return
        if isinstance(event, events.RunStarted):
            self.start()
        elif isinstance(event, events.Tick):
            if self._held is not None and event.now - self._last_draw >= REDRAW_SECONDS:
                self.draw(event.now)
        elif isinstance(event, (events.RunFinished, events.SessionEnded)):
            self.end()

    def start(self) -> None:
        if self._held is None:
            self._out = self._get_file()
            self._held = HeldFile(self._out)
            self._set_file(self._held)

    def draw(self, now: float) -> None:
        """Erase the status, write what pytest wrote since, draw the status again."""
        assert self._held is not None
        text = self._held.take()
        columns, rows = self._size()
        lines = self.progress.status_lines(now, columns - 1, max_workers=max(1, rows // 2 - 2))
        out = self._erase() + text
        self._remember(text)
        block = ("\n" if self._partial else "") + "\n".join(lines)
        self._rows_up = block.count("\n")
        self._write(out + block)
        self._last_draw = now

    def _erase(self) -> str:
        """Back to where the status began; the partial line pytest had written is
        written again (the clearing took it)."""
        if self._rows_up is None:
            return ""
        up = f"\x1b[{self._rows_up}A" if self._rows_up else ""
        self._rows_up = None
        return "\r" + up + ERASE_BELOW + self._partial

    def _remember(self, text: str) -> None:
        if "\n" in text:
            self._partial = text.rsplit("\n", 1)[1]
        else:
            self._partial += text

    def _write(self, text: str) -> None:
        if not text:
            return
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError):
            self._ended = True

    def end(self) -> None:
        """Erase the status for good, write what pytest wrote, give its file back."""
        if self._held is None or self._ended:
            self._ended = True
            return
        self._ended = True
        text = self._held.take()
        self._write(self._erase() + text)
        self._set_file(self._out)


class ProgressLines:
    """Consumer: a plain progress line every ``every`` seconds (see the module)."""

    description = "the progress lines"

    def __init__(
        self,
        progress: RunProgress,
        write_line: Callable[[str], None],
        every: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.progress = progress
        self._write_line = write_line
        self.every = every
        self._clock = clock
        self._next: float | None = None
        self._ended = False

    def __call__(self, event: events.RunEvent) -> None:
        self.progress(event)
        if isinstance(event, events.RunStarted):
            self._next = event.started_at + self.every
        elif isinstance(event, events.Tick):
            if self._ended or self._next is None or event.now < self._next:
                return
            self._next = event.now + self.every
            if self.progress.total:
                self._write_line(self.progress.plain_line(event.now))
        elif isinstance(event, events.RunFinished):
            self._ended = True
