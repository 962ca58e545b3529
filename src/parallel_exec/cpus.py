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


def cgroup_quota_cpus(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup (v2 ``cpu.max`` or v1 CFS files), if any."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, _, period = v2.read_text().strip().partition(" ")
            if quota == "max":
                return None
            return int(quota) / int(period or "100000")
        v1_quota = root / "cpu" / "cpu.cfs_quota_us"
        v1_period = root / "cpu" / "cpu.cfs_period_us"
        if v1_quota.is_file() and v1_period.is_file():
            quota_us = int(v1_quota.read_text().strip())
            if quota_us <= 0:
                return None
            return quota_us / int(v1_period.read_text().strip())
    except (OSError, ValueError):
        return None
    return None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """CPUs usable by this process: the affinity mask, further capped by a cgroup quota."""
    count = affinity_cpus()
    quota = cgroup_quota_cpus(root)
    if quota is not None and quota > 0:
        count = min(count, max(1, math.ceil(quota)))
    return count


def logical_cpus() -> int:
    """All logical CPUs of the machine, as xdist's ``-n logical`` counts them."""
    return max(1, psutil.cpu_count(logical=True) or os.cpu_count() or 1)
