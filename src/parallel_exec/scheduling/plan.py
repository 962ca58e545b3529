"""Planned strategies: ``time``, ``file``, ``suite`` and ``round-robin``.

All four plan before the first test runs and then adapt while the run goes:

1. Tests are grouped into *units*.  A unit that may not be split (all tests of a file
   for ``file``, of a class or module for ``suite``, of an ``xdist_group`` /
   ``parallel_exec_group`` marker for every strategy) moves as a whole; other tests are
   units of one.
2. ``time`` / ``file`` / ``suite``: units longer than ``affinity_slack`` are placed
   longest-predicted-first onto the least-loaded worker slot (LPT); a unit whose files a
   worker has already collected goes to that worker when that costs no balance (within
   ``affinity_slack``).  Shorter units then fill the slots in collection order up to the
   mean load, so that a file's tests stay on one worker (fewer imports per worker).
   ``round-robin``: unit i goes to slot i mod n, in collection order, no history needed.
3. Slots are queues kept here, on the controller; a worker gets its slot's units in
   chunks worth ``feed_seconds`` of predicted time, so little work sits in a worker
   where it could not be moved.
4. A worker whose slot is empty steals by predicted time, not by count: it takes units
   from the end of the slot with the most predicted time left.
5. A test running far beyond its prediction (mean + k * stdev and at least
   ``min_excess`` seconds) is a straggler: its worker is fed nothing more while it runs
   and its slot is given to the others.  A test is timed from ``test_started``, the
   worker's word that it runs it, never from its assignment: a worker keeps its last test
   in hand until it knows the next one, and may spend long importing a test's file, so an
   assigned test may not have started at all.  A straggler's request for work waits until
   its test finishes or the worker says it is idle, and is then answered.  The clock is an
   argument (``now``), so this is tested with a simulated clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .base import Assign, Decision, Drain, retry_target


@dataclass
class Unit:
    tests: list[int]
    predicted: float
    files: frozenset[int]


@dataclass
class Slot:
    units: deque[Unit] = field(default_factory=deque)
    worker: str | None = None

    @property
    def predicted(self) -> float:
        return sum(u.predicted for u in self.units)


def lpt(
    units: Sequence[Unit], slots: int, affinity: Mapping[int, int], affinity_slack: float
) -> list[list[Unit]]:
    """Place ``units`` on ``slots``; ``affinity`` maps file -> the slot that collected it.

    Units longer than ``affinity_slack`` go longest-predicted-first onto the least-loaded
    slot (LPT), or onto their file's collecting slot when that costs at most the slack.
    The short ones then fill slots in collection order up to the mean load, staying on
    the slot of the previous unit (or their file's collecting slot) while it has room:
    tests of one file stay together, so a worker imports few files, and no slot ends
    more than one short unit above the mean, which keeps LPT's guarantee.
    """
    loads = [0.0] * slots
    placed: list[list[Unit]] = [[] for _ in range(slots)]
    mean = sum(u.predicted for u in units) / slots

    def least() -> int:
        return min(range(slots), key=lambda s: (loads[s], s))

    def place(unit: Unit, slot: int) -> None:
        placed[slot].append(unit)
        loads[slot] += unit.predicted

    long_units = [i for i, u in enumerate(units) if u.predicted > affinity_slack]
    for i in sorted(long_units, key=lambda i: (-units[i].predicted, i)):
        unit = units[i]
        best = least()
        for file in unit.files:
            preferred = affinity.get(file)
            if preferred is not None and loads[preferred] <= loads[best] + affinity_slack:
                best = preferred
                break
        place(unit, best)
    current: int | None = None
    for unit in (u for u in units if u.predicted <= affinity_slack):
        candidates = [affinity.get(f) for f in sorted(unit.files)] + [current]
        fits = [c for c in candidates if c is not None and loads[c] + unit.predicted <= mean]
        current = fits[0] if fits else least()
        place(unit, current)
    return placed


class PlanScheduler:
    def __init__(
        self,
        *,
        test_files: Sequence[int],
        unit_keys: Sequence[str | None],
        estimates: Sequence[float],
        stdevs: Sequence[float | None] | None = None,
        owners: Mapping[int, str],
        planned_workers: int,
        round_robin: bool = False,
        steal: bool | None = None,
        feed_seconds: float = 0.25,
        straggler_k: float = 3.0,
        min_excess: float = 0.5,
        affinity_slack: float | None = None,
    ) -> None:
        """``unit_keys[i]``: tests sharing a key move together (None: a unit of one)."""
        count = len(test_files)
        self._estimates = list(estimates)
        self._stdevs = list(stdevs) if stdevs is not None else [None] * count
        self._file_of = list(test_files)
        self._feed_seconds = feed_seconds
        self._k = straggler_k
        self._min_excess = min_excess
        self._planned = max(1, planned_workers)
        self._steal = (not round_robin) if steal is None else steal

        units: list[Unit] = []
        keyed: dict[str, Unit] = {}
        self._key_of = list(unit_keys)
        for test in range(count):
            key = unit_keys[test]
            if key is not None and key in keyed:
                self._grow(keyed[key], test)
                continue
            unit = self._unit_of_one(test)
            units.append(unit)
            if key is not None:
                keyed[key] = unit

        first_wave = sorted(set(owners.values()))
        slot_of_worker = {w: i for i, w in enumerate(first_wave[: self._planned])}
        affinity = {f: slot_of_worker[w] for f, w in owners.items() if w in slot_of_worker}
        total = sum(u.predicted for u in units)
        slack = affinity_slack if affinity_slack is not None else total / self._planned / 20
        if round_robin:
            placed: list[list[Unit]] = [[] for _ in range(self._planned)]
            for i, unit in enumerate(units):
                placed[i % self._planned].append(unit)
        else:
            placed = lpt(units, self._planned, affinity, slack)
        self._slots = [Slot(deque(p)) for p in placed]
        #: The plan as made: each slot's tests, in order (what the run expected).
        self.plan: tuple[tuple[int, ...], ...] = tuple(
            tuple(t for unit in p for t in unit.tests) for p in placed
        )
        for worker, index in slot_of_worker.items():
            self._slots[index].worker = worker
        self.predicted_makespan: float | None = max((s.predicted for s in self._slots), default=0.0)

        self._pending: dict[str, list[int]] = {}
        self._drained: set[str] = set()
        self._finished: set[int] = set()
        self._stopped = False
        self._stragglers: set[str] = set()
        self._waiting: set[str] = set()  # stragglers that asked for work
        #: worker -> (the test it runs, since when), from ``test_started``.
        self._started: dict[str, tuple[int, float]] = {}
        self.straggler_tests: list[int] = []

    # ------------------------------------------------------------------ events

    def worker_joined(self, worker: str, now: float = 0.0) -> list[Decision]:
        self._pending.setdefault(worker, [])
        if self._slot_of(worker) is None:
            free = next((s for s in self._slots if s.worker is None), None)
            if free is not None:
                free.worker = worker
        return self._feed(worker, now)

    def work_requested(self, worker: str, now: float = 0.0) -> list[Decision]:
        if worker not in self._pending or worker in self._drained:
            return []
        if worker in self._stragglers and worker in self._started:
            self._waiting.add(worker)  # answered when its slow test finishes
            return []
        return self._feed(worker, now)

    def test_started(self, worker: str, test: int, now: float = 0.0) -> list[Decision]:
        pending = self._pending.get(worker)
        if not pending or pending[0] != test:
            return []  # not (or no longer) the test it holds first: nothing to time
        current = self._started.get(worker)
        if current is None or current[0] != test:
            self._started[worker] = (test, now)
        return []

    def worker_idle(self, worker: str, now: float = 0.0) -> list[Decision]:
        self._started.pop(worker, None)
        return self._not_straggling(worker, now)

    def test_finished(self, worker: str, test: int, now: float = 0.0) -> list[Decision]:
        pending = self._pending.get(worker)
        if pending is not None and test in pending:
            pending.remove(test)
        self._finished.add(test)
        # Tests finish in order: whatever it was running is over (a slow one too).
        self._started.pop(worker, None)
        return self._not_straggling(worker, now)

    def tick(self, now: float) -> list[Decision]:
        """Look for stragglers among the tests known to run; their slots go to the others."""
        for worker, (test, since) in self._started.items():
            pending = self._pending.get(worker)
            if not pending or pending[0] != test or worker in self._stragglers:
                continue
            stdev = self._stdevs[test]
            if stdev is None:
                continue
            elapsed = now - since
            bound = max(
                self._estimates[test] + self._k * stdev, self._estimates[test] + self._min_excess
            )
            if elapsed > bound:
                self._stragglers.add(worker)
                self.straggler_tests.append(test)
                slot = self._slot_of(worker)
                if slot is not None:
                    slot.worker = None  # its queue is now anyone's to take
        return []

    def retry(self, test: int, failed_on: str) -> list[Decision]:
        self._finished.discard(test)
        busy = self._drained | self._stragglers
        target = None if self._stopped else retry_target(self._pending, busy, failed_on)
        if target is None:
            orphan = Slot(deque([self._unit_of_one(test)]))
            self._slots.append(orphan)
            return []
        self._pending[target].append(test)
        return [Assign(target, (test,))]

    def worker_lost(self, worker: str, crashed: int | None) -> list[Decision]:
        pending = self._pending.pop(worker, [])
        self._drained.discard(worker)
        self._stragglers.discard(worker)
        self._waiting.discard(worker)
        self._started.pop(worker, None)
        if crashed is not None:
            self._finished.add(crashed)
        slot = self._slot_of(worker)
        if slot is None:
            slot = Slot()
            self._slots.append(slot)
        slot.worker = None
        back = [t for t in pending if t != crashed and t not in self._finished]
        # Requeued as the units they came in: a group stays whole on its next worker.
        regrouped: dict[object, Unit] = {}
        for test in back:
            key: object = self._key_of[test] if self._key_of[test] is not None else ("", test)
            unit = regrouped.get(key)
            if unit is None:
                regrouped[key] = self._unit_of_one(test)
            else:
                self._grow(unit, test)
        slot.units.extendleft(reversed(list(regrouped.values())))
        return []

    def tests_released(self, worker: str, tests: Sequence[int]) -> list[Decision]:
        return []  # it never reclaims: its queues are here, little sits in a worker

    def stop(self) -> None:
        self._stopped = True

    # ------------------------------------------------------------------ queries

    def pending(self, worker: str) -> tuple[int, ...]:
        return tuple(self._pending.get(worker, ()))

    @property
    def unassigned(self) -> tuple[int, ...]:
        return tuple(t for s in self._slots for u in s.units for t in u.tests)

    @property
    def done(self) -> bool:
        if any(self._pending.values()):
            return False
        return self._stopped or not any(s.units for s in self._slots)

    # ------------------------------------------------------------------ helpers

    def _unit_of_one(self, test: int) -> Unit:
        return Unit([test], self._estimates[test], frozenset({self._file_of[test]}))

    def _grow(self, unit: Unit, test: int) -> None:
        unit.tests.append(test)
        unit.predicted += self._estimates[test]
        unit.files = unit.files | {self._file_of[test]}

    def _slot_of(self, worker: str) -> Slot | None:
        return next((s for s in self._slots if s.worker == worker), None)

    def _source(self, worker: str) -> Slot | None:
        own = self._slot_of(worker)
        if own is not None and own.units:
            return own
        orphans = [s for s in self._slots if s.units and s.worker is None]
        if orphans:
            return max(orphans, key=lambda s: s.predicted)
        others = [s for s in self._slots if s.units and s.worker != worker]
        if not others or not self._steal:
            return None
        return max(others, key=lambda s: s.predicted)

    def _not_straggling(self, worker: str, now: float) -> list[Decision]:
        """``worker`` runs no slow test now: it is fed again, and answered if it asked."""
        self._stragglers.discard(worker)
        if worker in self._waiting:
            self._waiting.discard(worker)
            if worker in self._pending and worker not in self._drained:
                return self._feed(worker, now)
        return []

    def _feed(self, worker: str, now: float = 0.0) -> list[Decision]:
        source = None if self._stopped else self._source(worker)
        if source is None:
            self._drained.add(worker)
            return [Drain(worker)]
        own = self._slot_of(worker)
        stealing = source is not own
        tests: list[int] = []
        taken = 0.0
        if stealing:
            # Take units from the end (the shortest, LPT order) worth half of what is left.
            budget = source.predicted / 2
            stolen: list[Unit] = []
            while source.units and (not stolen or taken + source.units[-1].predicted <= budget):
                unit = source.units.pop()
                stolen.append(unit)
                taken += unit.predicted
            if own is None:
                own = Slot(worker=worker)
                self._slots.append(own)
            own.units.extend(reversed(stolen))
            source = own
            taken = 0.0
        while source.units and (not tests or taken < self._feed_seconds):
            unit = source.units.popleft()
            tests.extend(unit.tests)
            taken += unit.predicted
        self._pending[worker].extend(tests)
        return [Assign(worker, tuple(tests))]
