"""How many CPUs this process may really use.

``os.cpu_count()`` and ``psutil.cpu_count()`` report the machine, not what the process is
allowed: a CPU affinity mask (``taskset``, container cpusets) and a cgroup CPU quota
(``docker --cpus``, Kubernetes limits) both cap the usable parallelism.  Starting more
CPU-bound workers than that only adds start-up cost and contention.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (the machine's count where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, psutil.cpu_count(logical=True) or os.cpu_count() or 1)


def _ratio(quota: int, period: int) -> float | None:
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _v2_limit(directory: Path) -> float | None:
    text = (directory / "cpu.max").read_text().split()
    if not text or text[0] == "max":
        return None
    return _ratio(int(text[0]), int(text[1]) if len(text) > 1 else 100000)


def _own_v2_directories(root: Path, proc_cgroup: Path) -> list[Path]:
    """This process's cgroup v2 directory and its parents (a limit may sit on any)."""
    try:
        for line in proc_cgroup.read_text().splitlines():
            if line.startswith("0::"):
                relative = line[3:].strip().lstrip("/")
                here = root / relative if relative else root
                chain = [here, *here.parents]
                return [d for d in chain if d == root or root in d.parents]
    except OSError:
        pass
    return [root]


def cgroup_quota_cpus(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The tightest CPU quota over this process's cgroup and its parents, if any.

    cgroup v2 ``cpu.max`` (``"max"`` means none), else the v1 CFS quota files.  A file
    that cannot be read or parsed counts as no limit: a guess must never fail a run.
    """
    limits: list[float] = []
    for directory in _own_v2_directories(root, proc_cgroup):
        try:
            limit = _v2_limit(directory) if (directory / "cpu.max").is_file() else None
        except (OSError, ValueError, IndexError):
            limit = None
        if limit is not None:
            limits.append(limit)
    if not limits:
        try:
            quota = root / "cpu" / "cpu.cfs_quota_us"
            period = root / "cpu" / "cpu.cfs_period_us"
            if quota.is_file() and period.is_file():
                limit = _ratio(int(quota.read_text().strip()), int(period.read_text().strip()))
                if limit is not None:
                    limits.append(limit)
        except (OSError, ValueError):
            pass
    return min(limits) if limits else None


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """CPUs usable by this process: the affinity mask, further capped by a cgroup quota."""
    count = affinity_cpus()
    quota = cgroup_quota_cpus(root, proc_cgroup)
    if quota is not None and quota > 0:
        count = min(count, max(1, math.ceil(quota)))
    return count


def logical_cpus() -> int:
    """All logical CPUs of the machine, as xdist's ``-n logical`` counts them."""
    return max(1, psutil.cpu_count(logical=True) or os.cpu_count() or 1)
