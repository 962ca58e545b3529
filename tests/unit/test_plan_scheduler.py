"""``PlanScheduler`` (``time``, ``file``, ``suite``, ``round-robin``) on a simulated clock.

The scheduler never reads a clock: every event carries ``now``.  So a whole run is
simulated here by ``Simulation``, a small discrete-event simulator: workers execute what
they are fed, each test taking its simulated duration, ask for more when their queue is
empty, crash, are replaced, and the controller's periodic ``tick`` is an event like any
other.  Properties are then checked on plain data:

- placement: LPT's guarantee, ``makespan <= (4/3 - 1/(3m)) * OPT``, on the plan and on
  the simulated execution with exact estimates (stealing must never make it worse);
- bookkeeping: under any interleaving of completions, steals, stragglers, losses and a
  stop, every test is run (or reported crashed) exactly once, no test is held by two
  live workers, no ``Assign`` is empty, and no worker is sent away while work is queued
  on the controller (except ``round-robin``, which does not steal by design);
- the documented rules: stealing by predicted time, stragglers, groups, files, suites,
  round-robin placement and file affinity.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parallel_exec.scheduling import (
    Assign,
    Decision,
    Drain,
    PlanScheduler,
    TestPlanInput,
    make_scheduler,
    unit_key,
)

EPSILON = 1e-9


def plan(
    estimates: Sequence[float],
    workers: int,
    *,
    files: Sequence[int] | None = None,
    keys: Sequence[str | None] | None = None,
    stdevs: Sequence[float | None] | None = None,
    owners: Mapping[int, str] | None = None,
    round_robin: bool = False,
    **options: float | bool,
) -> PlanScheduler:
    """A ``PlanScheduler``: by default one file per test, no keys, no history spread."""
    count = len(estimates)
    return PlanScheduler(
        test_files=list(files) if files is not None else list(range(count)),
        unit_keys=list(keys) if keys is not None else [None] * count,
        estimates=list(estimates),
        stdevs=stdevs,
        owners=dict(owners or {}),
        planned_workers=workers,
        round_robin=round_robin,
        **options,  # type: ignore[arg-type]
    )


def assigned(decisions: list[Decision]) -> tuple[int, ...]:
    """The tests of the single ``Assign`` in ``decisions``."""
    assert len(decisions) == 1, decisions
    (decision,) = decisions
    assert isinstance(decision, Assign), decision
    return decision.tests


def lpt_factor(workers: int) -> float:
    """Graham's bound for longest-processing-time-first: 4/3 - 1/(3m)."""
    return 4 / 3 - 1 / (3 * workers)


def lower_bound(durations: Sequence[float], workers: int) -> float:
    return max(sum(durations) / workers, max(durations, default=0.0))


def optimal_makespan(durations: Sequence[float], workers: int) -> float:
    """The best makespan, by exhaustive search (small inputs only)."""
    jobs = sorted(durations, reverse=True)
    best = sum(jobs)

    def place(index: int, loads: list[float]) -> None:
        nonlocal best
        if max(loads) >= best:
            return
        if index == len(jobs):
            best = max(loads)
            return
        seen: set[float] = set()
        for slot in range(workers):
            if loads[slot] in seen:  # machines with equal load are interchangeable
                continue
            seen.add(loads[slot])
            loads[slot] += jobs[index]
            place(index + 1, loads)
            loads[slot] -= jobs[index]

    place(0, [0.0] * workers)
    return best


# ---------------------------------------------------------------------------- the simulator


class SchedulingViolation(AssertionError):
    """The scheduler broke one of its promises during a simulated run."""


@dataclass
class SimWorker:
    name: str
    queue: deque[int] = field(default_factory=deque)
    running: int | None = None
    drained: bool = False
    alive: bool = True
    ran: list[int] = field(default_factory=list)

    @property
    def holds(self) -> tuple[int, ...]:
        """What the scheduler should believe this worker holds, in run order."""
        head = () if self.running is None else (self.running,)
        return head + tuple(self.queue)


class Simulation:
    """Workers running the tests a scheduler feeds them, event by event, by simulated time.

    A worker runs its queue in order; each test takes ``durations[test]``; when the queue
    is empty it asks for more (after the scheduler has heard that its last test
    finished, as a worker's result message carries both).  A crash loses the worker and
    the test it was running (reported as crashed, so it counts as done); a replacement
    may join later.  ``tick_every`` drives ``Scheduler.tick`` like the controller does.
    Every decision is checked as it is applied; see ``SchedulingViolation``.
    """

    def __init__(
        self,
        scheduler: PlanScheduler,
        durations: Sequence[float],
        *,
        tick_every: float | None = None,
        steals: bool = True,
    ) -> None:
        self.scheduler = scheduler
        self.durations = list(durations)
        self.tick_every = tick_every
        self.steals = steals
        self.now = 0.0
        self.workers: dict[str, SimWorker] = {}
        self.reported: Counter[int] = Counter()
        self.ran_on: dict[int, str] = {}
        self.stopped = False
        self.makespan = 0.0
        self.requests = 0
        self._events: list[tuple[float, int, str, str, int]] = []
        self._sequence = itertools.count()
        self._next_tick = tick_every or math.inf
        self._next_name = itertools.count()
        self._replace_after: dict[str, float | None] = {}

    # ------------------------------------------------------------ scripting

    def new_name(self) -> str:
        return f"gw{next(self._next_name)}"

    def join_at(self, at: float, name: str | None = None) -> str:
        name = name or self.new_name()
        self._push(at, "join", name)
        return name

    def crash_at(self, at: float, name: str, replace_after: float | None) -> None:
        """Lose ``name`` at ``at`` (if it is still working); a replacement may follow."""
        self._replace_after[name] = replace_after
        self._push(at, "crash", name)

    def stop_at(self, at: float) -> None:
        self._push(at, "stop", "")

    # ------------------------------------------------------------ running

    def run(self, max_events: int = 200_000) -> float:
        """Run until nothing is left to happen; return the time of the last result."""
        for _ in range(max_events):
            if not self._events:
                break
            at = self._events[0][0]
            if self._next_tick <= at:
                self.now = self._next_tick
                self._next_tick += self.tick_every or math.inf
                self._apply(self.scheduler.tick(self.now))
                continue
            at, _, kind, name, test = heapq.heappop(self._events)
            self.now = at
            getattr(self, f"_on_{kind}")(name, test)
        else:
            raise SchedulingViolation("the simulation did not settle")
        self._check_the_end()
        return self.makespan

    def _push(self, at: float, kind: str, name: str, test: int = -1) -> None:
        heapq.heappush(self._events, (at, next(self._sequence), kind, name, test))

    def _on_join(self, name: str, _: int) -> None:
        self.workers[name] = SimWorker(name)
        self._apply(self.scheduler.worker_joined(name, self.now))
        self._start_next(self.workers[name])

    def _on_finish(self, name: str, test: int) -> None:
        worker = self.workers[name]
        if not worker.alive or worker.running != test:
            return  # it crashed meanwhile
        worker.running = None
        worker.ran.append(test)
        self.reported[test] += 1
        self.ran_on[test] = name
        self.makespan = max(self.makespan, self.now)
        self._apply(self.scheduler.test_finished(name, test, self.now))
        self._start_next(worker)

    def _on_crash(self, name: str, _: int) -> None:
        worker = self.workers.get(name)
        if worker is None or not worker.alive:
            return
        if worker.drained and worker.running is None and not worker.queue:
            return  # it had finished: a normal exit, not a loss
        worker.alive = False
        crashed = worker.running
        if crashed is not None:
            self.reported[crashed] += 1  # the controller reports it as crashed
            self.ran_on[crashed] = name
        self._apply(self.scheduler.worker_lost(name, crashed))
        replace_after = self._replace_after.get(name)
        if replace_after is not None and not self.stopped:
            self.join_at(self.now + replace_after)

    def _on_stop(self, _: str, __: int) -> None:
        self.stopped = True  # each worker finishes its current test and starts no other
        self.scheduler.stop()

    def _start_next(self, worker: SimWorker) -> None:
        while worker.alive and worker.running is None and not self.stopped:
            if worker.queue:
                worker.running = worker.queue.popleft()
                self._apply(self.scheduler.test_started(worker.name, worker.running, self.now))
                self._push(
                    self.now + self.durations[worker.running], "finish", worker.name, worker.running
                )
                return
            if worker.drained or not self._ask(worker):
                return

    def _ask(self, worker: SimWorker) -> bool:
        """Ask for work; True when some came."""
        self.requests += 1
        queued_on_controller = bool(self.scheduler.unassigned)
        decisions = self.scheduler.work_requested(worker.name, self.now)
        if not decisions:
            raise SchedulingViolation(
                f"t={self.now:.3f}: {worker.name} asked for work and got no answer; "
                "it would wait forever"
            )
        self._apply(decisions)
        fed = any(isinstance(d, Assign) and d.worker == worker.name for d in decisions)
        if queued_on_controller and self.steals and not self.stopped and not fed:
            raise SchedulingViolation(
                f"t={self.now:.3f}: {worker.name} was drained while tests "
                f"{self.scheduler.unassigned} were still queued on the controller"
            )
        return fed

    def _apply(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            worker = self.workers.get(decision.worker)
            if worker is None or not worker.alive:
                raise SchedulingViolation(f"{decision} for a worker that is not there")
            if isinstance(decision, Drain):
                worker.drained = True
                continue
            if not decision.tests:
                raise SchedulingViolation(f"t={self.now:.3f}: empty {decision}")
            if self.stopped:
                raise SchedulingViolation(f"t={self.now:.3f}: {decision} after stop()")
            for test in decision.tests:
                holders = [w.name for w in self.workers.values() if w.alive and test in w.holds]
                if holders:
                    raise SchedulingViolation(f"{decision}: test {test} is held by {holders}")
                if self.reported[test]:
                    raise SchedulingViolation(f"{decision}: test {test} already finished")
            worker.queue.extend(decision.tests)
        for worker in self.workers.values():
            if worker.alive and self.scheduler.pending(worker.name) != worker.holds:
                raise SchedulingViolation(
                    f"{worker.name} holds {worker.holds}, the scheduler believes "
                    f"{self.scheduler.pending(worker.name)}"
                )

    def _check_the_end(self) -> None:
        twice = sorted(t for t, n in self.reported.items() if n > 1)
        if twice:
            raise SchedulingViolation(f"tests reported more than once: {twice}")
        if self.stopped:
            return
        missing = sorted(set(range(len(self.durations))) - set(self.reported))
        if missing:
            raise SchedulingViolation(
                f"the run ended (nothing left to happen) with tests never run: {missing}; "
                f"unassigned {self.scheduler.unassigned}"
            )
        if not self.scheduler.done:
            raise SchedulingViolation("every test ran but the scheduler is not done")


def simulate_exact(durations: Sequence[float], workers: int) -> tuple[PlanScheduler, float]:
    """Plan with exact estimates, no owners; run it; return the scheduler and makespan."""
    scheduler = plan(durations, workers)
    simulation = Simulation(scheduler, durations)
    for _ in range(workers):
        simulation.join_at(0.0)
    return scheduler, simulation.run()


# ---------------------------------------------------------------------------- LPT


@st.composite
def planted_instances(draw: st.DrawFn) -> tuple[int, int, list[float]]:
    """``(workers, T, durations)``: a perfect packing, so OPT = LB = T is known.

    Each worker's T seconds are cut into 1-12 integer pieces; the pieces are shuffled.
    """
    workers = draw(st.integers(1, 16))
    target = draw(st.integers(1, 400))
    pieces: list[float] = []
    for _ in range(workers):
        count = draw(st.integers(1, min(12, target)))
        cuts = draw(
            st.lists(
                st.integers(1, target - 1), min_size=count - 1, max_size=count - 1, unique=True
            )
            if count > 1
            else st.just([])
        )
        bounds = [0, *sorted(cuts), target]
        pieces.extend(float(b - a) for a, b in itertools.pairwise(bounds))
    return workers, target, draw(st.permutations(pieces))


@settings(max_examples=150, deadline=None)
@given(planted_instances())
def test_lpt_plan_and_execution_within_grahams_bound(
    instance: tuple[int, int, list[float]],
) -> None:
    workers, optimum, durations = instance
    assert lower_bound(durations, workers) == optimum  # the packing is perfect
    scheduler, actual = simulate_exact(durations, workers)
    predicted = scheduler.predicted_makespan
    assert predicted is not None
    bound = lpt_factor(workers) * optimum + EPSILON
    assert predicted <= bound
    assert actual <= bound
    # With exact estimates, feeding in chunks and stealing never lose time on the plan.
    assert actual <= predicted + EPSILON


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(0.001, 60.0), min_size=1, max_size=200),
    st.integers(1, 16),
)
def test_any_suite_plan_and_execution_within_the_list_scheduling_bound(
    durations: list[float], workers: int
) -> None:
    """For any durations: LB <= makespan <= total/m + (1 - 1/m) * longest <= (2 - 1/m) LB.

    (OPT is unknown here, so LPT's 4/3 bound cannot be checked; it is, above and below,
    on inputs whose OPT is known.)
    """
    scheduler, actual = simulate_exact(durations, workers)
    predicted = scheduler.predicted_makespan
    assert predicted is not None
    floor = lower_bound(durations, workers)
    ceiling = sum(durations) / workers + (1 - 1 / workers) * max(durations)
    tolerance = 1e-9 * sum(durations)
    assert floor - tolerance <= predicted <= ceiling + tolerance
    assert floor - tolerance <= actual <= predicted + tolerance


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 30).map(float), min_size=1, max_size=8), st.integers(1, 4))
def test_lpt_within_its_bound_of_the_true_optimum(durations: list[float], workers: int) -> None:
    optimum = optimal_makespan(durations, workers)
    scheduler, actual = simulate_exact(durations, workers)
    assert scheduler.predicted_makespan is not None
    assert scheduler.predicted_makespan <= lpt_factor(workers) * optimum + EPSILON
    assert actual <= lpt_factor(workers) * optimum + EPSILON


def test_lpt_relative_to_lb_alone_can_be_no_better_than_optimal() -> None:
    """Why the bound is checked against OPT, not LB = max(total/m, longest).

    Three 1 s tests on two workers: LB is 1.5 s but no schedule beats 2 s, which is
    4/3 LB, above 4/3 - 1/6 = 7/6 LB.  The plan is optimal there, and that is all LPT
    can promise.
    """
    scheduler, actual = simulate_exact([1.0, 1.0, 1.0], 2)
    assert lower_bound([1.0, 1.0, 1.0], 2) == 1.5
    assert scheduler.predicted_makespan == actual == 2.0 == optimal_makespan([1.0] * 3, 2)


def test_lpt_places_longest_first_on_the_least_loaded_slot() -> None:
    # By hand: 7 -> s0 (tie); 5 -> s1; 4 -> s1 (5 < 7): 9; 3 -> s0: 10; 2 -> s1: 11.
    scheduler = plan([2.0, 7.0, 3.0, 5.0, 4.0], 2)
    assert scheduler.predicted_makespan == 11.0
    assert assigned(scheduler.worker_joined("gw0")) == (1,)
    assert assigned(scheduler.work_requested("gw0")) == (2,)
    assert assigned(scheduler.worker_joined("gw1")) == (3,)
    assert assigned(scheduler.work_requested("gw1")) == (4,)
    assert assigned(scheduler.work_requested("gw1")) == (0,)


def test_feeding_in_chunks_worth_feed_seconds() -> None:
    scheduler = plan([0.1] * 10, 1, feed_seconds=0.25)
    assert assigned(scheduler.worker_joined("gw0")) == (0, 1, 2)  # 0.3 >= 0.25
    assert scheduler.unassigned == (3, 4, 5, 6, 7, 8, 9)
    assert assigned(plan([5.0, 5.0], 1).worker_joined("gw0")) == (0,)  # at least one unit


# ---------------------------------------------------------------------------- stealing


def round_robin_with_stealing(estimates: Sequence[float], workers: int) -> PlanScheduler:
    """Placement known by construction (test i in slot i mod n), one unit per feed."""
    return plan(estimates, workers, round_robin=True, steal=True, feed_seconds=0.0)


def test_a_thief_takes_from_the_slot_with_the_most_predicted_time() -> None:
    # slot 0: tests 0 3 6 9    (1 s each)
    # slot 1: tests 1 4 7 10   (1, 0.5, 0.5, 0.5): three units left, 1.5 s
    # slot 2: tests 2 5 8      (1, 4, 4):          two units left, 8 s
    estimates = [1, 1, 1, 1, 0.5, 4, 1, 0.5, 4, 1, 0.5]
    scheduler = round_robin_with_stealing(estimates, 3)
    assert assigned(scheduler.worker_joined("gw0")) == (0,)
    assert assigned(scheduler.worker_joined("gw1")) == (1,)
    assert assigned(scheduler.worker_joined("gw2")) == (2,)
    for own in (3, 6, 9):
        assert assigned(scheduler.work_requested("gw0")) == (own,)
    # By time, not by count: slot 2 has fewer units but more seconds.  From its end,
    # whole units worth at most half of its 8 s: test 8 (4 s).
    assert assigned(scheduler.work_requested("gw0")) == (8,)
    assert scheduler.unassigned == (4, 7, 10, 5)


def test_a_thief_takes_about_half_from_the_end() -> None:
    # slot 1 after its first test: tests 4 7 10 13 worth 4 + 2 + 1 + 1 = 8 s.
    estimates = [1, 1, 1, 1, 4, 1, 1, 2, 1, 1, 1, 1, 1, 1]
    scheduler = round_robin_with_stealing(estimates, 3)
    scheduler.worker_joined("gw0")
    scheduler.worker_joined("gw1")
    scheduler.worker_joined("gw2")
    for own in (3, 6, 9, 12):
        assert assigned(scheduler.work_requested("gw0")) == (own,)
    for own in (5, 8, 11):
        assert assigned(scheduler.work_requested("gw2")) == (own,)
    # 13 (1 s) then 10 (1 s) then 7 (2 s): 4 s, half of 8; 4 (4 s) stays.
    assert assigned(scheduler.work_requested("gw0")) == (7,)
    assert scheduler.pending("gw0") == (0, 3, 6, 9, 12, 7)
    # The stolen units now sit in the thief's slot, in their order: it runs them next.
    assert assigned(scheduler.work_requested("gw0")) == (10,)
    assert assigned(scheduler.work_requested("gw0")) == (13,)
    # gw2 steals from what gw1 has left.
    assert assigned(scheduler.work_requested("gw2")) == (4,)
    assert scheduler.unassigned == ()


def test_a_thief_takes_at_least_one_unit() -> None:
    scheduler = round_robin_with_stealing([1.0, 1.0, 1.0, 30.0], 2)
    assert assigned(scheduler.worker_joined("gw0")) == (0,)
    assert assigned(scheduler.worker_joined("gw1")) == (1,)
    assert assigned(scheduler.work_requested("gw0")) == (2,)
    assert assigned(scheduler.work_requested("gw0")) == (3,)  # more than half, but all there is


# ---------------------------------------------------------------------------- stragglers


def test_a_straggler_is_not_fed_and_its_plan_goes_to_the_others() -> None:
    # Eight 1 s tests with a 0.1 s stdev: the bar is max(1 + 3 * 0.1, 1 + 0.5) = 1.5 s.
    scheduler = plan([1.0] * 8, 2, stdevs=[0.1] * 8)
    assert assigned(scheduler.worker_joined("gw0", now=0.0)) == (0,)
    assert assigned(scheduler.worker_joined("gw1", now=0.0)) == (1,)
    scheduler.test_started("gw0", 0, now=0.0)
    scheduler.test_started("gw1", 1, now=0.0)
    scheduler.test_finished("gw1", 1, now=0.9)
    assert assigned(scheduler.work_requested("gw1", now=0.9)) == (3,)
    scheduler.test_started("gw1", 3, now=0.9)

    scheduler.tick(1.5)  # exactly at the bar: not yet
    assert scheduler.straggler_tests == []
    scheduler.tick(1.6)
    assert scheduler.straggler_tests == [0]  # gw0's test 0, not gw1's (0.7 s in)

    assert scheduler.work_requested("gw0", now=1.7) == []
    # gw0's planned tests 2 4 6 go to gw1, which keeps asking.
    taken: list[int] = []
    now = 1.8
    while scheduler.unassigned:
        scheduler.test_finished("gw1", scheduler.pending("gw1")[0], now)
        taken.extend(assigned(scheduler.work_requested("gw1", now)))
        now += 1.0
    assert sorted(taken) == [2, 4, 5, 6, 7]
    assert scheduler.pending("gw0") == (0,)

    # It asked while straggling: the answer comes when its test finishes (here: nothing
    # left, so it is drained).  A worker that asked is never left waiting.
    assert scheduler.test_finished("gw0", 0, now=now) == [Drain("gw0")]


def test_a_straggler_is_fed_again_after_its_test_finishes() -> None:
    scheduler = plan([1.0] * 6, 2, stdevs=[0.0] * 6)
    scheduler.worker_joined("gw0", now=0.0)
    scheduler.worker_joined("gw1", now=0.0)
    scheduler.test_started("gw0", 0, now=0.0)
    scheduler.test_finished("gw1", 1, now=1.0)
    scheduler.tick(1.6)  # gw0: 1.6 s on a 1 s test with no spread, bar 1.5 s
    assert scheduler.straggler_tests == [0]
    assert scheduler.work_requested("gw0", now=1.7) == []
    assert assigned(scheduler.test_finished("gw0", 0, now=2.0))


def test_a_straggler_that_did_not_ask_is_fed_when_it_asks() -> None:
    scheduler = plan([1.0] * 6, 2, stdevs=[0.0] * 6)
    scheduler.worker_joined("gw0", now=0.0)
    scheduler.worker_joined("gw1", now=0.0)
    scheduler.test_started("gw0", 0, now=0.0)
    scheduler.test_finished("gw1", 1, now=1.0)
    scheduler.tick(1.6)
    assert scheduler.straggler_tests == [0]
    assert scheduler.test_finished("gw0", 0, now=2.0) == []
    assert assigned(scheduler.work_requested("gw0", now=2.0))


def test_tests_without_history_never_straggle() -> None:
    scheduler = plan([1.0] * 4, 2, stdevs=[None] * 4)
    scheduler.worker_joined("gw0", now=0.0)
    scheduler.test_started("gw0", 0, now=0.0)
    scheduler.tick(1000.0)
    assert scheduler.straggler_tests == []
    assert isinstance(scheduler.work_requested("gw0", now=1000.0)[0], Assign)


def test_a_test_held_but_not_started_is_never_judged() -> None:
    """Issue 13: a worker holds its one test until it knows the next one (or imports its
    file first); however long that takes, the test is not a straggler, and the worker's
    request for work is answered."""
    scheduler = plan([1.0] * 4, 2, stdevs=[0.0] * 4, feed_seconds=0.5)
    assert assigned(scheduler.worker_joined("gw0", now=0.0)) == (0,)
    scheduler.tick(100.0)
    assert scheduler.straggler_tests == []
    assert assigned(scheduler.work_requested("gw0", now=100.0))


def test_a_test_is_timed_from_its_start() -> None:
    scheduler = plan([1.0] * 4, 2, stdevs=[0.0] * 4, feed_seconds=0.5)
    scheduler.worker_joined("gw0", now=0.0)
    scheduler.worker_idle("gw0", now=0.0)
    scheduler.work_requested("gw0", now=0.0)
    scheduler.test_started("gw0", 0, now=5.0)
    scheduler.test_started("gw0", 0, now=6.0)  # said again: it still runs since 5.0
    scheduler.tick(6.4)
    assert scheduler.straggler_tests == []
    scheduler.tick(6.6)
    assert scheduler.straggler_tests == [0]


def test_a_start_of_another_test_than_the_first_held_is_ignored() -> None:
    scheduler = plan([1.0] * 4, 1, stdevs=[0.0] * 4, feed_seconds=2.0)
    assert assigned(scheduler.worker_joined("gw0", now=0.0)) == (0, 1)
    scheduler.test_started("gw0", 1, now=0.0)
    scheduler.tick(100.0)
    assert scheduler.straggler_tests == []


def test_a_straggler_that_asked_is_answered_when_it_goes_idle() -> None:
    """Whatever made it a straggler, a worker that runs nothing is never left waiting."""
    scheduler = plan([1.0] * 6, 2, stdevs=[0.0] * 6)
    scheduler.worker_joined("gw0", now=0.0)
    scheduler.worker_joined("gw1", now=0.0)
    scheduler.test_started("gw0", 0, now=0.0)
    scheduler.tick(1.6)
    assert scheduler.straggler_tests == [0]
    assert scheduler.work_requested("gw0", now=1.7) == []  # it runs test 0: wait
    assert scheduler.worker_idle("gw0", now=1.8) != []  # it does not (any more): answer
    assert scheduler.work_requested("gw0", now=1.9) != []


@pytest.mark.parametrize(
    ("estimate", "stdev", "k", "min_excess", "bar"),
    [
        (1.0, 0.5, 3.0, 0.5, 2.5),  # the spread decides
        (1.0, 0.1, 3.0, 0.5, 1.5),  # the minimum excess decides
        (2.0, 0.2, 2.0, 1.0, 3.0),
    ],
)
def test_straggler_bar_is_mean_plus_k_stdev_and_at_least_min_excess(
    estimate: float, stdev: float, k: float, min_excess: float, bar: float
) -> None:
    def straggles_after(elapsed: float) -> bool:
        scheduler = plan(
            [estimate] * 2, 1, stdevs=[stdev] * 2, straggler_k=k, min_excess=min_excess
        )
        scheduler.worker_joined("gw0", now=0.0)
        scheduler.test_started("gw0", 0, now=10.0)  # timed from its start, not assignment
        scheduler.tick(10.0 + elapsed)
        return scheduler.straggler_tests == [0]

    assert not straggles_after(bar - 0.01)
    assert straggles_after(bar + 0.01)


# ---------------------------------------------------------------------------- units


def keys_for(strategy: str, nodeids: Sequence[str], files: Sequence[int]) -> list[str | None]:
    return [unit_key(strategy, n, f, None) for n, f in zip(nodeids, files, strict=True)]


def test_unit_keys() -> None:
    assert unit_key("time", "a.py::test_x", 0, None) is None
    assert unit_key("round-robin", "a.py::test_x", 0, None) is None
    assert unit_key("time", "a.py::test_x", 0, "db") == "group:db"
    assert unit_key("file", "a.py::test_x", 3, "db") == "group:db"  # a group wins
    assert unit_key("file", "a.py::test_x", 3, None) == "file:3"
    assert unit_key("suite", "a.py::test_x", 0, None) == "suite:a.py"
    assert unit_key("suite", "a.py::test_x[1-2]", 0, None) == "suite:a.py"
    assert unit_key("suite", "a.py::TestA::test_x", 0, None) == "suite:a.py::TestA"
    assert unit_key("suite", "a.py::TestA::TestB::test_x", 0, None) == "suite:a.py::TestA"
    assert unit_key("suite", "a.py::TestA::test_x[p]", 0, None) == "suite:a.py::TestA"


def test_suite_key_of_a_parametrized_function_whose_id_contains_double_colons() -> None:
    """A module-level test is a module-level test, whatever its parameter id says.

    pytest keeps ``::`` inside ``[...]`` ids as they are, so ``a.py::test_url[http::x]``
    is the function ``test_url`` of ``a.py``; the ``suite`` strategy must keep it with
    the rest of the module, not treat ``test_url[http`` as a class.
    """
    assert unit_key("suite", "a.py::test_url[http::x]", 0, None) == "suite:a.py"
    assert unit_key("suite", "a.py::TestA::test_url[a::b]", 0, None) == "suite:a.py::TestA"


def run_to_the_end(
    scheduler: PlanScheduler, durations: Sequence[float], workers: int
) -> Simulation:
    simulation = Simulation(scheduler, durations, tick_every=0.1)
    for _ in range(workers):
        simulation.join_at(0.0)
    simulation.run()
    return simulation


def runners_of(simulation: Simulation, tests: Sequence[int]) -> set[str]:
    return {simulation.ran_on[t] for t in tests}


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.01, 3.0), st.sampled_from([None, "a", "b", "c"])), max_size=40),
    st.integers(1, 5),
    st.floats(0.2, 3.0),
)
def test_group_units_never_split(
    tests: list[tuple[float, str | None]], workers: int, slowdown: float
) -> None:
    """Tests of a group, anywhere in the suite, run on one worker: stealing moves whole
    units, even when actual durations are not the estimates."""
    estimates = [d for d, _ in tests]
    keys = [None if g is None else f"group:{g}" for _, g in tests]
    scheduler = plan(estimates, workers, files=[i % 3 for i in range(len(tests))], keys=keys)
    simulation = run_to_the_end(scheduler, [d * slowdown for d in estimates], workers)
    for group in "abc":
        members = [i for i, (_, g) in enumerate(tests) if g == group]
        assert len(runners_of(simulation, members)) <= 1, group


def test_a_group_stays_whole_after_its_worker_is_lost() -> None:
    """The tests of a group its worker did not get to still run together, on one worker.

    gw0 holds the whole group (ten 0.1 s tests) and crashes in the second one.  The eight
    left must not be split between the replacement and a thief.
    """
    count = 10
    estimates = [0.1] * count + [0.1] * 6
    keys: list[str | None] = ["group:db"] * count + [None] * 6
    scheduler = plan(estimates, 2, files=[0] * count + [1] * 6, keys=keys)
    simulation = Simulation(scheduler, estimates)
    gw0 = simulation.join_at(0.0)
    simulation.join_at(0.0)
    simulation.crash_at(0.15, gw0, replace_after=0.0)
    simulation.run()
    group = list(range(count))
    assert simulation.ran_on[0] == gw0
    assert simulation.ran_on[1] == gw0  # crashed in it
    left = group[2:]
    assert len(runners_of(simulation, left)) == 1, {t: simulation.ran_on[t] for t in left}


def test_file_strategy_keeps_each_file_on_one_worker() -> None:
    files = [i % 4 for i in range(24)]
    nodeids = [f"f{f}.py::test_{i}" for i, f in enumerate(files)]
    estimates = [0.05 * (1 + i % 5) for i in range(24)]
    scheduler = plan(estimates, 3, files=files, keys=keys_for("file", nodeids, files))
    simulation = run_to_the_end(scheduler, estimates, 3)
    for file in range(4):
        assert len(runners_of(simulation, [i for i, f in enumerate(files) if f == file])) == 1


def test_suite_strategy_keeps_classes_and_module_functions_together() -> None:
    nodeids = [
        "a.py::test_one",
        "a.py::TestX::test_1",
        "a.py::test_two",
        "a.py::TestX::test_2",
        "a.py::TestY::test_1",
        "b.py::test_one",
        "a.py::TestY::test_2",
        "b.py::TestX::test_1",
        "b.py::test_two[1]",
        "b.py::test_two[2]",
    ]
    files = [0 if n.startswith("a.py") else 1 for n in nodeids]
    estimates = [0.3] * len(nodeids)
    scheduler = plan(estimates, 4, files=files, keys=keys_for("suite", nodeids, files))
    simulation = run_to_the_end(scheduler, estimates, 4)
    by_scope: dict[str, list[int]] = {}
    for index, nodeid in enumerate(nodeids):
        key = unit_key("suite", nodeid, files[index], None)
        assert key is not None
        by_scope.setdefault(key, []).append(index)
    assert set(by_scope) == {"suite:a.py", "suite:a.py::TestX", "suite:a.py::TestY"} | {
        "suite:b.py",
        "suite:b.py::TestX",
    }
    for scope, members in by_scope.items():
        assert len(runners_of(simulation, members)) == 1, scope


def test_make_scheduler_plans_every_strategy_but_plain_load() -> None:
    nodeids = ["a.py::test_1", "a.py::TestX::test_2", "b.py::test_3"]
    plan_input = TestPlanInput(
        nodeids=nodeids,
        test_files=[0, 0, 1],
        groups=[None, None, None],
        owners={},
        estimates=[1.0, 2.0, 3.0],
        stdevs=[None, None, None],
    )
    for strategy in ("time", "file", "suite", "round-robin"):
        scheduler = make_scheduler(strategy, plan_input, 2)
        assert isinstance(scheduler, PlanScheduler), strategy
        assert scheduler.predicted_makespan is not None
    file_plan = make_scheduler("file", plan_input, 2)
    assert assigned(file_plan.worker_joined("gw0")) in {(0, 1), (2,)}
    with pytest.raises(ValueError, match="strategy"):
        make_scheduler("each", plan_input, 2)


# ---------------------------------------------------------------------------- round-robin


def test_round_robin_places_test_i_on_worker_i_mod_n_and_never_steals() -> None:
    scheduler = plan([0.1 * (1 + i % 7) for i in range(11)], 3, round_robin=True)
    received: dict[str, list[int]] = {"gw0": [], "gw1": [], "gw2": []}
    for worker in received:
        received[worker].extend(assigned(scheduler.worker_joined(worker)))
    # gw0 empties its slot and is drained although the others still have work queued.
    while True:
        decisions = scheduler.work_requested("gw0")
        if decisions == [Drain("gw0")]:
            break
        received["gw0"].extend(assigned(decisions))
    assert scheduler.unassigned
    for worker in ("gw1", "gw2"):
        while (decisions := scheduler.work_requested(worker)) != [Drain(worker)]:
            received[worker].extend(assigned(decisions))
    assert received == {
        "gw0": [0, 3, 6, 9],
        "gw1": [1, 4, 7, 10],
        "gw2": [2, 5, 8],
    }


def test_round_robin_is_deterministic_whatever_the_durations() -> None:
    def placement(estimates: Sequence[float]) -> list[tuple[int, ...]]:
        scheduler = plan(estimates, 2, round_robin=True, feed_seconds=1e9)
        return [assigned(scheduler.worker_joined(w)) for w in ("gw0", "gw1")]

    expected = [(0, 2, 4, 6), (1, 3, 5, 7)]
    assert placement([1.0] * 8) == expected
    assert placement([9.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 9.0]) == expected


def test_round_robin_keeps_groups_as_one_unit() -> None:
    keys: list[str | None] = [None, "group:g", None, "group:g", None]
    scheduler = plan([1.0] * 5, 2, keys=keys, round_robin=True, feed_seconds=1e9)
    # Units in order of first appearance: [0], [1, 3], [2], [4] -> slots 0, 1, 0, 1.
    assert assigned(scheduler.worker_joined("gw0")) == (0, 2)
    assert assigned(scheduler.worker_joined("gw1")) == (1, 3, 4)


# ---------------------------------------------------------------------------- affinity


def test_affinity_sends_a_tied_unit_to_the_worker_that_collected_its_file() -> None:
    # File 0 was collected by gw1, file 1 by gw0; two equal tests: a tie every time.
    scheduler = plan([1.0, 1.0], 2, files=[0, 1], owners={0: "gw1", 1: "gw0"}, affinity_slack=0)
    # Join order does not matter: first-wave workers own their slots.
    assert assigned(scheduler.worker_joined("gw1")) == (0,)
    assert assigned(scheduler.worker_joined("gw0")) == (1,)


def test_affinity_never_costs_balance() -> None:
    # All of file 0 is gw1's, but after the first 5 s test gw1 is 5 s ahead: the second
    # goes to gw0; the 1 s test ties again (5 vs 5) and goes home to gw1.
    scheduler = plan(
        [5.0, 5.0, 1.0], 2, files=[0, 0, 0], owners={0: "gw1", 1: "gw0"}, affinity_slack=0
    )
    assert scheduler.predicted_makespan == 6.0
    assert assigned(scheduler.worker_joined("gw0")) == (1,)
    gw1 = list(assigned(scheduler.worker_joined("gw1")))
    gw1 += assigned(scheduler.work_requested("gw1"))
    assert gw1 == [0, 2]


def test_affinity_within_the_slack() -> None:
    # Slack 0.5 s: 1.0 -> gw0 (its home, a tie); 0.6 -> gw1 (gw0 is 1 s ahead, more
    # than the slack); 0.4 -> home to gw0 (1.0 is within 0.5 of gw1's 0.6).
    scheduler = plan(
        [1.0, 0.6, 0.4], 2, files=[0, 1, 1], owners={0: "gw0", 1: "gw0"}, affinity_slack=0.5
    )
    assert assigned(scheduler.worker_joined("gw0", now=0.0)) == (0,)
    assert assigned(scheduler.work_requested("gw0")) == (2,)
    assert assigned(scheduler.worker_joined("gw1")) == (1,)


def test_a_worker_outside_the_first_wave_takes_a_free_slot() -> None:
    scheduler = plan([1.0, 1.0, 1.0], 3, files=[0, 1, 2], owners={0: "gw0", 1: "gw1"})
    assert assigned(scheduler.worker_joined("gw5")) == (2,)
    assert assigned(scheduler.worker_joined("gw1")) == (1,)
    assert assigned(scheduler.worker_joined("gw0")) == (0,)


# ---------------------------------------------------------------------------- bookkeeping


def test_empty_suite_is_done_and_drains() -> None:
    scheduler = plan([], 3)
    assert scheduler.done
    assert scheduler.predicted_makespan == 0.0
    assert scheduler.worker_joined("gw0") == [Drain("gw0")]


def test_worker_lost_returns_its_tests_except_the_crashed_one() -> None:
    scheduler = plan([0.1] * 6, 1, feed_seconds=0.25)
    assert assigned(scheduler.worker_joined("gw0")) == (0, 1, 2)
    scheduler.test_finished("gw0", 0)
    scheduler.worker_lost("gw0", crashed=1)
    assert scheduler.pending("gw0") == ()
    assert scheduler.unassigned == (2, 3, 4, 5)
    assert not scheduler.done
    assert assigned(scheduler.worker_joined("gw1")) == (2, 3, 4)


def test_stop_drains_and_is_done_once_nothing_is_pending() -> None:
    scheduler = plan([1.0] * 4, 1)
    scheduler.worker_joined("gw0")
    scheduler.stop()
    assert not scheduler.done  # gw0 still holds a test
    assert scheduler.work_requested("gw0") == [Drain("gw0")]
    assert scheduler.worker_joined("gw1") == [Drain("gw1")]
    scheduler.test_finished("gw0", 0)
    assert scheduler.done


@dataclass(frozen=True)
class Scenario:
    """One random run: a suite, its plan, what really happens."""

    estimates: list[float]
    actual: list[float]
    stdevs: list[float | None]
    files: list[int]
    keys: list[str | None]
    strategy: str
    workers: int
    joins: list[float]
    crashes: list[tuple[float, int]]
    stop: float | None

    @property
    def round_robin(self) -> bool:
        return self.strategy == "round-robin"


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    count = draw(st.integers(0, 40))
    files = draw(st.lists(st.integers(0, 4), min_size=count, max_size=count))
    groups = draw(
        st.lists(st.sampled_from([None, None, None, "g1", "g2"]), min_size=count, max_size=count)
    )
    strategy = draw(st.sampled_from(["time", "file", "suite", "round-robin"]))
    nodeids = [f"f{f}.py::{'TestK::' if i % 3 == 0 else ''}test_{i}" for i, f in enumerate(files)]
    keys = [
        unit_key(strategy, nodeid, file, group)
        for nodeid, file, group in zip(nodeids, files, groups, strict=True)
    ]
    estimates = draw(st.lists(st.floats(0.01, 2.0), min_size=count, max_size=count))
    # Most tests take about their estimate; some take many times longer (stragglers).
    factors = draw(
        st.lists(
            st.one_of(st.floats(0.5, 1.5), st.floats(3.0, 10.0)), min_size=count, max_size=count
        )
    )
    stdevs = draw(
        st.lists(st.one_of(st.none(), st.floats(0.0, 0.3)), min_size=count, max_size=count)
    )
    workers = draw(st.integers(1, 5))
    joins = draw(st.lists(st.floats(0.0, 2.0), min_size=workers, max_size=workers))
    crashes = draw(
        st.lists(st.tuples(st.floats(0.0, 20.0), st.integers(0, workers - 1)), max_size=3)
    )
    stop = draw(st.one_of(st.none(), st.none(), st.floats(0.0, 15.0)))
    return Scenario(
        estimates=estimates,
        actual=[e * f for e, f in zip(estimates, factors, strict=True)],
        stdevs=stdevs,
        files=files,
        keys=keys,
        strategy=strategy,
        workers=workers,
        joins=joins,
        crashes=crashes,
        stop=stop,
    )


def simulate(scenario: Scenario) -> Simulation:
    scheduler = plan(
        scenario.estimates,
        scenario.workers,
        files=scenario.files,
        keys=scenario.keys,
        stdevs=scenario.stdevs,
        round_robin=scenario.round_robin,
    )
    simulation = Simulation(
        scheduler, scenario.actual, tick_every=0.1, steals=not scenario.round_robin
    )
    names = [simulation.join_at(at) for at in scenario.joins]
    for at, index in scenario.crashes:
        simulation.crash_at(at, names[index], replace_after=0.3)
    if scenario.stop is not None:
        simulation.stop_at(scenario.stop)
    simulation.run()
    return simulation


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_every_test_runs_exactly_once_under_any_interleaving(scenario: Scenario) -> None:
    """Completions, steals, stragglers, losses with replacements and a stop, in any order.

    ``Simulation`` checks as it goes that no ``Assign`` is empty, that no test is held by
    two live workers, that the scheduler's ``pending`` is what each worker really holds,
    that every request is answered, and (except for round-robin) that nobody is drained
    while work is queued; at the end, that no test ran twice and, unless the run was
    stopped, that every test ran and the scheduler is done.
    """
    simulation = simulate(scenario)
    if scenario.stop is None:
        assert sorted(simulation.reported) == list(range(len(scenario.estimates)))


# ---------------------------------------------------------------------------- the harness
# The properties above are only as good as the simulator's checks: each deliberately
# broken variant of the scheduler below must be caught.


class ForgetsLostWork(PlanScheduler):
    """Broken on purpose: a lost worker's tests are dropped, not queued again."""

    def worker_lost(self, worker: str, crashed: int | None) -> list[Decision]:
        self._pending[worker] = []
        return super().worker_lost(worker, crashed)


class NeverSteals(PlanScheduler):
    """Broken on purpose: drains a worker whose own slot is empty."""

    def work_requested(self, worker: str, now: float = 0.0) -> list[Decision]:
        if not self.pending(worker) and not any(s.units for s in self._slots if s.worker == worker):
            self._drained.add(worker)
            return [Drain(worker)]
        return super().work_requested(worker, now)


class HandsOutTwice(PlanScheduler):
    """Broken on purpose: the first test is assigned to every joining worker."""

    def worker_joined(self, worker: str, now: float = 0.0) -> list[Decision]:
        decisions = super().worker_joined(worker, now)
        if 0 not in self.pending(worker):
            self._pending[worker].insert(0, 0)
            decisions.append(Assign(worker, (0,)))
        return decisions


@pytest.mark.parametrize(
    ("broken", "crash", "message"),
    [
        (ForgetsLostWork, True, "never run"),
        (NeverSteals, False, "drained while tests"),
        (HandsOutTwice, False, "is held by"),
    ],
    ids=["forgets-lost-work", "never-steals", "hands-out-twice"],
)
def test_the_simulator_catches_a_broken_scheduler(
    broken: type[PlanScheduler], crash: bool, message: str
) -> None:
    # Round-robin placement with stealing on: gw0's slot has the 1 s tests, gw1's the
    # 4 s ones; feeds of 3 s, so a worker holds several tests at once.
    estimates = [1.0, 4.0] * 4
    scheduler = broken(
        test_files=[0] * 8,
        unit_keys=[None] * 8,
        estimates=estimates,
        owners={},
        planned_workers=2,
        round_robin=True,
        steal=True,
        feed_seconds=3.0,
    )
    simulation = Simulation(scheduler, estimates)
    first = simulation.join_at(0.0)
    simulation.join_at(0.0)
    if crash:
        simulation.crash_at(0.5, first, replace_after=0.1)
    with pytest.raises(SchedulingViolation, match=message):
        simulation.run()


def test_tests_of_a_file_nobody_collected_stay_together_within_the_slack() -> None:
    """Equal short tests in four files that no worker has collected: LPT alone deals them
    out one by one, and every worker would import every file; filled in collection order
    each slot takes one file."""
    from parallel_exec.scheduling.plan import Unit, lpt

    units = [Unit([t], 1.0, frozenset({t // 10})) for t in range(40)]
    placed = lpt(units, 4, {}, affinity_slack=2.0)
    files_per_slot = [len({f for u in slot for f in u.files}) for slot in placed]
    loads = [sum(u.predicted for u in slot) for slot in placed]
    assert files_per_slot == [1, 1, 1, 1]
    assert loads == [10.0, 10.0, 10.0, 10.0]
    # Tests longer than the slack are placed by LPT alone: one of each file in turn.
    spread = lpt(units, 4, {}, affinity_slack=0.0)
    assert [len({f for u in slot for f in u.files}) for slot in spread] == [4, 4, 4, 4]
