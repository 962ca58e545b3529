"""The launcher: which workers start, when, and with which share of the collection.

- **Waves.** The first wave collects: as many workers as usable CPUs (at most ``-n``),
  so collection is not slowed by more interpreters starting than there are CPUs.  With
  history (and spawned workers) the later workers start at once, niced, collecting
  nothing up front; otherwise they start once the collection is known.
- **In turn.** Workers started after collection start at most one per CPU at a time, the
  next when one is ready or gone, and only while tests are left to hand out.
- **The restart budget** (``--max-worker-restart``, default 4 x workers) bounds
  replacements of crashed workers; a share of the collection is tried by at most
  ``MAX_COLLECTION_ATTEMPTS`` workers.

It drives the part of the pool that starts workers (``WorkerStarter``) and nothing
else, so it is tested with a fake one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

#: A collection share ``(k, n)``: files ``k, k+n, ...`` of the walk; None: no share
#: (collect on demand); ``(0, 1)``: everything.
Share = tuple[int, int] | None

#: Niceness of workers started before collection is done (history known, more workers
#: than CPUs): their start-up must not slow the collectors down.
EAGER_NICE = 10

#: Cap on workers started for retries (not crashes); a bound against a start/finish loop.
MAX_EXTRA_WORKERS = 16

#: How many workers may try to collect one share of the files before the run fails: an
#: error every fresh worker meets (a plugin failing at start-up) is not retried until
#: the restart budget runs out.
MAX_COLLECTION_ATTEMPTS = 2


class WorkerStarter(Protocol):
    """The part of the pool the launcher drives."""

    def next_worker_id(self) -> str: ...

    def start(self, worker_ids: list[str], nice: int = 0) -> None: ...


@dataclass
class RestartBudget:
    """How many crashed workers may still be replaced (``--max-worker-restart``)."""

    limit: int
    used: int = 0

    def take(self) -> bool:
        """Use one restart; False when the budget is exhausted."""
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit


class Launcher:
    def __init__(
        self,
        pool: WorkerStarter,
        *,
        planned: int,
        cpus: int,
        known_tests: int,
        split: bool,
        forked: bool,
        budget: RestartBudget,
    ) -> None:
        self.pool = pool
        self.planned = planned
        self.cpus = max(1, cpus)
        self.split = split
        self.budget = budget
        # Without history the suite size is unknown until it is collected, so the later
        # workers start after that (a one-test run does not pay for 16 interpreters).
        # With history they start at once, niced; forked workers cost little to start
        # and start after collection, at full priority.
        if known_tests:
            self.first_wave = min(planned, known_tests, self.cpus)
        else:
            self.first_wave = min(planned, self.cpus)
        self.eager = 0 if forked else max(0, min(planned, known_tests) - self.first_wave)
        #: The share each worker was started with.
        self.share_of: dict[str, Share] = {}
        #: Replacement worker -> the crashed worker it replaces.
        self.replaces: dict[str, str] = {}
        #: Workers to start after collection, in turn, and those starting now.
        self._to_start: deque[Share] = deque()
        self._starting: set[str] = set()
        self._share_failures: dict[Share, int] = {}
        self._extra_workers = 0

    @property
    def later_share(self) -> Share:
        """The share of a worker that joins after the first wave."""
        return None if self.split else (0, 1)

    def first_wave_shares(self) -> list[Share]:
        if self.split:
            return [(k, self.first_wave) for k in range(self.first_wave)]
        return [(0, 1)] * self.first_wave

    def start_first(self) -> list[str]:
        """The first wave and, with history, the eager later workers (niced)."""
        started = self._spawn(self.first_wave_shares())
        if self.eager:
            started += self._spawn([self.later_share] * self.eager, nice=EAGER_NICE)
        return started

    def start_in_turn(self, count: int, may_start: Callable[[], bool]) -> None:
        """Start ``count`` later workers, at most one per CPU at a time: a start-up is
        CPU-bound, so started all at once they would all be ready only when the last is.
        ``may_start``: whether work is still left for them (asked before each start)."""
        self._to_start.extend([self.later_share] * count)
        self.start_next(may_start)

    def start_next(self, may_start: Callable[[], bool]) -> None:
        while self._to_start and len(self._starting) < self.cpus:
            if not may_start():
                self._to_start.clear()  # nothing left for them to do
                return
            self._starting.update(self._spawn([self._to_start.popleft()]))

    def settled(self, worker_id: str, may_start: Callable[[], bool]) -> None:
        """The worker is ready (or gone): the next one in turn may start."""
        if worker_id in self._starting:
            self._starting.discard(worker_id)
            self.start_next(may_start)

    def replace_collector(self, worker_id: str) -> str | None:
        """A first-wave worker ended before it collected its share: start another for
        that share.  None when one was started, else why not."""
        share = self.share_of.get(worker_id)
        failures = self._share_failures[share] = self._share_failures.get(share, 0) + 1
        if failures >= MAX_COLLECTION_ATTEMPTS:
            return f"so did the {failures - 1} worker(s) started before it for that share"
        if not self.budget.take():
            return f"--max-worker-restart ({self.budget.limit}) is exhausted"
        self._spawn([share], replaces=worker_id)
        return None

    def replace(self, lost: str | None, counted: bool = True) -> bool:
        """Work is waiting and no live worker takes it: start one.  After a crash
        (``lost``) that is a restart, within the budget (not ``counted``: a worker the
        controller ended, outside it); else (a retry queued after the other workers were
        drained) an extra worker, within ``MAX_EXTRA_WORKERS``, then the budget.  False:
        nothing could be started."""
        if lost is None and self._extra_workers < MAX_EXTRA_WORKERS:
            self._extra_workers += 1
            self._spawn([self.later_share])
            return True
        if lost is not None and not counted:
            self._spawn([self.later_share], replaces=lost)
            return True
        if self.budget.take():
            self._spawn([self.later_share], replaces=lost)
            return True
        return False

    def _spawn(self, shares: list[Share], replaces: str | None = None, nice: int = 0) -> list[str]:
        ids = [self.pool.next_worker_id() for _ in shares]
        self.share_of.update(zip(ids, shares, strict=True))
        if replaces is not None:
            self.replaces.update(dict.fromkeys(ids, replaces))
        self.pool.start(ids, nice=nice)
        return ids
