"""The processes a worker and its tests start: found, measured and ended cheaply.

Shared by both sides and imports nothing heavy.  On Linux everything is read from
``/proc``; elsewhere psutil (a dependency of the package) is asked, at a higher cost.

- ``PidWatermark``: whether any process (or thread) was created on the machine since
  the last look (the last pid the kernel gave out, ``/proc/loadavg``): a test that
  started nothing costs one ``pread`` instead of a scan of every process.
- ``snapshot`` / ``owned_by``: the processes descended from a worker or left in its
  process group (a double-forked daemon keeps the group unless it asks otherwise).
- ``rss``: resident memory of a set of processes.
- ``kill_group``: the one way a worker's process group is signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

_PROC = "/proc"
LINUX = sys.platform.startswith("linux") and os.path.exists("/proc/self/stat")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    pgid: int
    #: ``R``, ``S``, ``Z`` (a zombie: ended, not yet waited for)...
    state: str
    #: When it started, in clock ticks since boot (Linux; 0 elsewhere).
    started: int


class PidWatermark:
    """Tells whether the kernel gave out a new pid since the last ``moved`` (True when
    it cannot tell)."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._last = b""
        if LINUX:
            with contextlib.suppress(OSError):
                self._fd = os.open("/proc/loadavg", os.O_RDONLY)
                self._last = self._read()

    def _read(self) -> bytes:
        assert self._fd is not None
        return os.pread(self._fd, 128, 0).rsplit(None, 1)[-1]

    def moved(self) -> bool:
        if self._fd is None:
            return True
        try:
            last = self._read()
        except OSError:
            return True
        moved = last != self._last
        self._last = last
        return moved

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def now_ticks() -> int:
    """The clock ``ProcessInfo.started`` is on (ticks since boot)."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return 0
    return int(time.clock_gettime(boottime) * _TICKS)


def _read_stat(pid: int) -> ProcessInfo | None:
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[-1].split()
    try:
        return ProcessInfo(pid, int(fields[1]), int(fields[2]), fields[0].decode(), int(fields[19]))
    except (IndexError, ValueError):
        return None


def snapshot() -> list[ProcessInfo]:
    """Every process this user can see (Linux: ``/proc``; else psutil)."""
    if LINUX:
        infos = []
        for name in os.listdir(_PROC):
            if name.isdigit():
                info = _read_stat(int(name))
                if info is not None:
                    infos.append(info)
        return infos
    import psutil

    infos = []
    for proc in psutil.process_iter(["pid", "ppid", "status"]):
        with contextlib.suppress(Exception):
            status = proc.info["status"]
            state = "Z" if status == psutil.STATUS_ZOMBIE else "S"
            infos.append(
                ProcessInfo(proc.pid, proc.info["ppid"] or 0, os.getpgid(proc.pid), state, 0)
            )
    return infos


def owned_by(
    root: int, infos: Iterable[ProcessInfo], group: int | None = None
) -> list[ProcessInfo]:
    """The live processes descended from ``root`` or in process group ``group`` (not
    ``root`` itself, not zombies)."""
    infos = list(infos)
    children: dict[int, list[ProcessInfo]] = {}
    for info in infos:
        children.setdefault(info.ppid, []).append(info)
    found: dict[int, ProcessInfo] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child.pid not in found:
                found[child.pid] = child
                todo.append(child.pid)
    if group is not None:
        for info in infos:
            if info.pgid == group and info.pid != root:
                found.setdefault(info.pid, info)
    return [info for info in found.values() if info.state != "Z"]


def command(pid: int) -> str:
    """The command line of ``pid`` (its name in brackets when it has none to show)."""
    if LINUX:
        try:
            with open(f"{_PROC}/{pid}/cmdline", "rb") as fh:
                args = fh.read().rstrip(b"\0").split(b"\0")
        except OSError:
            return "?"
        text = " ".join(a.decode("utf-8", "replace") for a in args if a)
        if text:
            return text[:200]
        # Kernel threads, zombies and a process in the middle of exec have no
        # arguments to show (yet): their name says what they are.
        try:
            with open(f"{_PROC}/{pid}/comm", "rb") as fh:
                name = fh.read().strip().decode("utf-8", "replace")
        except OSError:
            return "?"
        return f"[{name}]" if name else "?"
    try:
        import psutil

        return " ".join(psutil.Process(pid).cmdline())[:200] or "?"
    except Exception:
        return "?"


def rss(pids: Iterable[int]) -> int:
    """Resident memory of ``pids`` together, in bytes (those that ended count 0)."""
    total = 0
    for pid in pids:
        if LINUX:
            try:
                with open(f"{_PROC}/{pid}/statm", "rb") as fh:
                    total += int(fh.read().split()[1]) * _PAGE
            except (OSError, IndexError, ValueError):
                continue
        else:
            try:
                import psutil

                total += psutil.Process(pid).memory_info().rss
            except Exception:
                continue
    return total


class TreeMemory:
    """Resident memory of a worker and of the processes it started (its descendants,
    its group).  The machine's processes are looked at again only when one was created
    since the last look."""

    def __init__(self) -> None:
        self._watermark = PidWatermark()
        self._snapshot: list[ProcessInfo] | None = None
        self._owned: dict[int, list[int]] = {}

    def rss(self, pid: int) -> int:
        if self._watermark.moved() or self._snapshot is None:
            self._snapshot = snapshot()
            self._owned.clear()
        owned = self._owned.get(pid)
        if owned is None:
            owned = [info.pid for info in owned_by(pid, self._snapshot, pid)]
            self._owned[pid] = owned
        return rss([pid, *owned])


class OwnMemory:
    """This process's resident memory, read cheaply (one ``pread`` of a kept
    ``/proc/self/statm`` descriptor) after every test."""

    def __init__(self) -> None:
        self._fd: int | None = None
        if LINUX:
            with contextlib.suppress(OSError):
                self._fd = os.open("/proc/self/statm", os.O_RDONLY)

    def rss(self) -> int:
        if self._fd is None:
            return rss([os.getpid()])
        try:
            return int(os.pread(self._fd, 128, 0).split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            return 0


def kill(pids: Iterable[int], signum: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def end_descendants(root: int) -> None:
    """SIGKILL every live process descended from ``root`` or left in its process group
    (when it leads one)."""
    group = root if hasattr(os, "getpgid") and _group_of(root) == root else None
    processes = owned_by(root, snapshot(), group)
    kill((info.pid for info in processes), signal.SIGKILL)


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


class Process(Protocol):
    """A worker's process, as ``subprocess.Popen`` gives it."""

    def poll(self) -> int | None: ...

    def kill(self) -> None: ...


def kill_worker(process: Process | None, pid: int | None) -> None:
    """The one way a worker is killed: the process, then every process left in its
    group (what its tests started; a worker leads a group of its own)."""
    if process is not None and process.poll() is None:
        with contextlib.suppress(OSError):
            process.kill()
    if pid:
        kill_group(pid, signal.SIGKILL)


def signal_worker(process: Process | None, pid: int | None, signum: int, group: bool) -> None:
    """A signal to a live worker (its stacks), or to its whole group (SIGTERM)."""
    if not pid or process is None or process.poll() is not None:
        return
    if group:
        kill_group(pid, signum)
    else:
        kill([pid], signum)


def kill_group(pgid: int, signum: int) -> None:
    """Signal a worker's process group (the worker leads it: ``pgid`` is its pid)."""
    if pgid > 1 and hasattr(os, "killpg"):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signum)


def lead_own_group() -> None:
    """Make this process lead a process group of its own: what it starts stays in it
    (unless it moves), and the controller ends them all with one signal."""
    if hasattr(os, "setpgid"):
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)


def format_size(size: float) -> str:
    """``2.0 GiB``, ``300.0 MiB``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"
