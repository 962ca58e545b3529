"""Schedulers decide which worker runs which test; they never do I/O.

A scheduler receives events (a worker joined, asked for work, finished a test, was lost)
as method calls and answers with decisions (``Assign``, ``Drain``).  The controller turns
decisions into protocol messages.  Because nothing here touches a process, a clock or a
channel, schedulers are unit- and property-tested on plain data.
"""

from __future__ import annotations

from .base import Assign, Decision, Drain, Scheduler
from .load import LoadScheduler

__all__ = ["Assign", "Decision", "Drain", "LoadScheduler", "Scheduler", "make_scheduler"]


def make_scheduler(strategy: str, test_count: int, planned_workers: int) -> Scheduler:
    if strategy == "load":
        return LoadScheduler(test_count, planned_workers)
    raise ValueError(f"no scheduler for strategy {strategy!r}")
