"""Writing the files a run leaves behind (reports, exported history).

Every such file is written atomically (a temporary file beside the target, then a
rename), so a reader sees the old file or the new one, never half of one; and it ends
with the permissions a plain ``open(path, "w")`` would give a new file, ``0o666`` less
the process umask (``0o644`` under the usual ``022``), as pytest's ``--junitxml`` file
has: a CI step running as another user must be able to read it.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

#: Where Linux (4.7 and later) shows a process's umask without changing it.
_PROC_STATUS = "/proc/self/status"
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask.  Read from ``/proc/self/status`` where it can be: the portable
    way, setting it and putting it back, opens a window in which another thread creating
    a file gets mode bits it did not ask for."""
    try:
        with open(_PROC_STATUS, encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split(":", 1)[1].strip(), 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:  # the window sets a stricter mask, never a looser one
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permission bits ``open(path, "w")`` gives a file it creates."""
    return 0o666 & ~current_umask()


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one.

    The file ends with mode ``0o666 & ~umask``, not the ``0o600`` of the temporary
    file ``mkstemp`` makes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if hasattr(os, "fchmod"):  # POSIX (Windows has no owner/group/other bits)
                os.fchmod(fh.fileno(), new_file_mode())
            fh.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
