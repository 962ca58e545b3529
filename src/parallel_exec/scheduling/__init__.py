"""Schedulers decide which worker runs which test; they never do I/O.

A scheduler receives events (a worker joined, asked for work, finished a test, was lost)
as method calls and answers with decisions (``Assign``, ``Drain``).  The controller turns
decisions into protocol messages.  Because nothing here touches a process, a clock or a
channel, schedulers are unit- and property-tested on plain data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .base import Assign, Decision, Drain, Scheduler
from .load import LoadScheduler

__all__ = ["Assign", "Decision", "Drain", "LoadScheduler", "Scheduler", "make_scheduler"]


def make_scheduler(
    strategy: str, test_files: Sequence[int], owners: Mapping[int, str], planned_workers: int
) -> Scheduler:
    """``test_files[i]`` is the file (collection order) of test ``i``; ``owners`` maps a
    file to the worker that has already collected it."""
    if strategy == "load":
        return LoadScheduler(test_files, owners, planned_workers)
    raise ValueError(f"no scheduler for strategy {strategy!r}")
