"""Whole runs of every scheduler with workers that behave like ``WorkerSession``.

``test_plan_scheduler.Simulation`` lets a worker ask for work only when its queue is
empty and hears every answer at once.  A real worker does neither, and a scheduler that
is right there can still hang a real run (issue 13: ``-n 4 --dist time`` on click's suite
hung forever).  Here each simulated worker follows ``WorkerSession.pytest_runtestloop``
step by step:

- it keeps one test in hand until it knows the next one or is drained (pytest's teardown
  needs ``nextitem``), and blocks, waiting for the controller, when it holds one test and
  is not drained;
- it asks for more work (``want_more``) before running the test that brings its queue
  to ``LOW_WATER``, and before blocking;
- it batches finished tests (``FLUSH_INTERVAL``), and its ``Progress`` says which test it
  runs now or starts at once (``running``; None: it runs nothing until it hears from the
  controller), sent only when that changes between running and not running;
- a test whose file it did not collect makes it import that file when the test is
  assigned, which may take long (a heavy import) before it can even ask again.

Messages take a fixed latency each way and keep their order; the controller handles a
``Progress`` as ``ParallelRun._on_progress`` does, joins the first wave only when all of
it has collected (dropping requests that come before), and calls ``tick`` every
``TICK_SECONDS``.  Tests take random durations, some far beyond their estimates (so
stragglers happen), some predicted above ``feed_seconds`` (so they are fed alone).

The properties: every run terminates (within a bound of steps and of simulated time
taken from the suite: all its work, imports and round trips in a row; a run where
nothing happens but ticks while a worker waits is reported as hanging), every test
finishes exactly once, and no request for work is left unanswered.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parallel_exec.controller.dispatcher import TICK_SECONDS
from parallel_exec.scheduling import (
    Decision,
    Drain,
    PlanScheduler,
    Reclaim,
    Scheduler,
    TestPlanInput,
    make_scheduler,
)
from parallel_exec.worker.session import FLUSH_INTERVAL, FLUSH_SIZE, LOW_WATER


class SimulationViolation(AssertionError):
    """The run broke a property: it hung, lost or repeated a test, or ignored a request."""


@dataclass(frozen=True)
class Progress:
    """A worker's ``protocol.Progress``, with canonical indices for node ids."""

    worker: str
    tests: tuple[int, ...]
    want_more: bool
    running: int | None


@dataclass(frozen=True)
class Collected:
    worker: str


@dataclass(frozen=True)
class Released:
    """A worker's ``protocol.Released``: the tests of a ``Reclaim`` it gave back."""

    worker: str
    tests: tuple[int, ...]


@dataclass
class SimWorker:
    """The state of ``WorkerSession`` that its run loop reads."""

    name: str
    imported: set[int]
    queue: deque[int] = field(default_factory=deque)
    inbox: deque[Decision] = field(default_factory=deque)
    drained: bool = False
    asked: bool = False
    told_running: bool = False
    batch: list[int] = field(default_factory=list)
    running: int | None = None
    #: "starting", "busy" (running a test or importing), "blocked" or "ended".
    state: str = "starting"
    last_flush: float = 0.0


@dataclass(frozen=True)
class Suite:
    """One random suite and how a run of it goes."""

    strategy: str
    files: list[int]
    groups: list[str | None]
    estimates: list[float]
    actual: list[float]
    stdevs: list[float | None]
    #: Seconds a worker that did not collect a file spends importing it.
    import_cost: list[float]
    workers: int
    first_wave: int
    starts: list[float]
    #: File -> the index of the first-wave worker that collected it.
    owner: list[int]
    latency: float

    @property
    def nodeids(self) -> list[str]:
        return [
            f"f{f}.py::{'TestK::' if i % 3 == 0 else ''}test_{i}" for i, f in enumerate(self.files)
        ]


class Simulation:
    """A controller, its scheduler and workers, run by simulated time until the end."""

    def __init__(self, suite: Suite, scheduler: Scheduler | None = None) -> None:
        self.suite = suite
        self.names = [f"gw{i}" for i in range(suite.workers)]
        owners = {f: self.names[w] for f, w in enumerate(suite.owner)}
        self.scheduler = scheduler or make_scheduler(
            suite.strategy,
            TestPlanInput(
                nodeids=suite.nodeids,
                test_files=suite.files,
                groups=suite.groups,
                owners=owners,
                estimates=suite.estimates,
                stdevs=suite.stdevs,
            ),
            suite.workers,
        )
        self.workers = {
            name: SimWorker(name, {f for f, w in owners.items() if w == name})
            for name in self.names
        }
        self.now = 0.0
        self.steps = 0
        self.finished: Counter[int] = Counter()
        self.assigned: Counter[int] = Counter()
        self.joined: set[str] = set()
        self.collected: list[str] = []
        self.ready = False  # the first wave has collected: the scheduler exists
        self.drain_sent: set[str] = set()
        self.unanswered: dict[str, float] = {}  # worker -> when its request came
        self.log: list[str] = []
        self._events: list[tuple[float, int, str, object]] = []
        self._sequence = itertools.count()
        for name, at in zip(self.names, suite.starts, strict=True):
            self._push(at, "start", name)

    # ------------------------------------------------------------ running

    @property
    def horizon(self) -> float:
        """When the run must have ended: even with every test and import in a row and a
        round trip for each test, the work is done by then."""
        suite = self.suite
        return (
            max(suite.starts)
            + sum(suite.actual)
            + suite.workers * sum(suite.import_cost)
            + 4 * suite.latency * (len(suite.files) + suite.workers)
            + 1.0
        )

    def run(self) -> None:
        horizon = self.horizon
        max_steps = int(horizon / TICK_SECONDS) + 100 * (len(self.suite.files) + 10)
        next_tick = 0.0
        quiet_since: float | None = None  # nothing but ticks since then
        while True:
            self.steps += 1
            if self.steps > max_steps or self.now > horizon:
                what = "no end" if quiet_since is None else f"hangs since t={quiet_since:.2f}"
                raise SimulationViolation(
                    f"the run {what} (bounds: {max_steps} steps, t={horizon:.2f})\n" + self.state()
                )
            if not self._events and all(w.state == "ended" for w in self.workers.values()):
                break
            if self._events and self._events[0][0] < next_tick:
                at, _, kind, payload = heapq.heappop(self._events)
                self.now = at
                quiet_since = None
                getattr(self, f"_on_{kind}")(payload)
                continue
            if not self._events and quiet_since is None:
                quiet_since = self.now
            self.now = next_tick
            next_tick += TICK_SECONDS
            if self.ready:
                self._decide(self.scheduler.tick(self.now))
        self._check_the_end()

    def state(self) -> str:
        lines = [f"t={self.now:.2f}, unanswered requests: {self.unanswered}"]
        for w in self.workers.values():
            lines.append(
                f"  {w.name}: {w.state}, queue {list(w.queue)}, running {w.running}, "
                f"drained {w.drained}, asked {w.asked}, "
                f"scheduler's pending {self.scheduler.pending(w.name)}"
            )
        lines.extend("  " + line for line in self.log[-30:])
        return "\n".join(lines)

    def _push(self, at: float, kind: str, payload: object) -> None:
        heapq.heappush(self._events, (at, next(self._sequence), kind, payload))

    def _check_the_end(self) -> None:
        twice = sorted(t for t, n in self.finished.items() if n > 1)
        missing = sorted(set(range(len(self.suite.files))) - set(self.finished))
        if twice or missing:
            raise SimulationViolation(f"ran twice {twice}, never {missing}\n{self.state()}")
        if self.unanswered:
            raise SimulationViolation(f"requests left unanswered\n{self.state()}")
        if not self.scheduler.done:
            raise SimulationViolation("every test ran but the scheduler is not done")

    # ------------------------------------------------------------ the controller

    def _on_controller(self, message: Collected | Progress | Released) -> None:
        if isinstance(message, Released):
            self.log.append(f"{self.now:.2f} {message.worker} -> {message}")
            for test in message.tests:
                self.assigned[test] -= 1
            self._decide(self.scheduler.tests_released(message.worker, message.tests))
            return
        if isinstance(message, Collected):
            self.collected.append(message.worker)
            if self.ready:
                self._join(message.worker)
            elif len(self.collected) == self.suite.first_wave:
                self.ready = True
                for name in self.collected:
                    self._join(name)
            return
        if not self.ready:
            return  # no scheduler yet: the worker asks again once it hears from us
        name = message.worker
        self.log.append(f"{self.now:.2f} {name} -> {message}")
        # As ParallelRun._on_progress: finished tests, the worker's state, its request.
        for test in message.tests:
            self.finished[test] += 1
            self._decide(self.scheduler.test_finished(name, test, self.now))
        self._decide(self._state_event(name, message))
        if message.want_more:
            if name not in self.drain_sent:
                self.unanswered.setdefault(name, self.now)
            self._decide(self.scheduler.work_requested(name, self.now))

    def _state_event(self, name: str, message: Progress) -> list[Decision]:
        if message.running is None:
            return self.scheduler.worker_idle(name, self.now)
        return self.scheduler.test_started(name, message.running, self.now)

    def _join(self, name: str) -> None:
        self.joined.add(name)
        self._decide(self.scheduler.worker_joined(name, self.now))

    def _decide(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            name = decision.worker
            if isinstance(decision, Reclaim):
                # Not an answer to the holder's own request; a drained holder may be asked.
                if name not in self.joined or not decision.tests:
                    raise SimulationViolation(f"t={self.now:.2f}: {decision}")
                self.log.append(f"{self.now:.2f} -> {name}: {decision}")
                self._push(self.now + self.suite.latency, "worker_receives", decision)
                continue
            if name not in self.joined or name in self.drain_sent:
                raise SimulationViolation(f"t={self.now:.2f}: {decision} for {name}")
            self.unanswered.pop(name, None)
            if isinstance(decision, Drain):
                self.drain_sent.add(name)
            else:
                if not decision.tests:
                    raise SimulationViolation(f"t={self.now:.2f}: empty {decision}")
                for test in decision.tests:
                    self.assigned[test] += 1
                    if self.assigned[test] > 1 or self.finished[test]:
                        raise SimulationViolation(f"t={self.now:.2f}: {decision}: {test} again")
            self.log.append(f"{self.now:.2f} -> {name}: {decision}")
            self._push(self.now + self.suite.latency, "worker_receives", decision)

    # ------------------------------------------------------------ the workers

    def _send(self, worker: SimWorker, message: Collected | Progress | Released) -> None:
        self._push(self.now + self.suite.latency, "controller", message)

    def _on_start(self, name: str) -> None:
        worker = self.workers[name]
        self._send(worker, Collected(name))
        self._loop(worker)

    def _on_worker_receives(self, decision: Decision) -> None:
        worker = self.workers[decision.worker]
        if isinstance(decision, Reclaim):
            # At once, as WorkerSession._release on the receiver thread: all but the
            # first in the queue (the running test's next); an ended worker gives none
            # (the controller says so for it when its session ends).
            wanted = set(decision.tests)
            given = tuple(t for i, t in enumerate(worker.queue) if i and t in wanted)
            worker.queue = deque(t for t in worker.queue if t not in given)
            self._send(worker, Released(worker.name, given))
            return
        worker.inbox.append(decision)
        if worker.state == "blocked":
            self._loop(worker)

    def _on_imported(self, name: str) -> None:
        self._loop(self.workers[name])

    def _on_finish(self, name: str) -> None:
        """The rest of the loop's first branch, after ``_run_one``."""
        worker = self.workers[name]
        assert worker.running is not None
        worker.batch.append(worker.running)
        worker.running = None
        if not worker.drained and not worker.asked and len(worker.queue) <= LOW_WATER:
            worker.asked = True
            self._flush(worker, want_more=True, running=self._runnable(worker))
        elif len(worker.batch) >= FLUSH_SIZE or self.now - worker.last_flush >= FLUSH_INTERVAL:
            self._flush(worker, running=self._runnable(worker))
        self._loop(worker)

    def _pump(self, worker: SimWorker) -> float:
        """Apply what arrived; return the seconds spent importing assigned tests' files."""
        cost = 0.0
        while worker.inbox:
            decision = worker.inbox.popleft()
            if isinstance(decision, Drain):
                worker.drained = True
                continue
            for test in decision.tests:
                file = self.suite.files[test]
                if file not in worker.imported:
                    worker.imported.add(file)
                    cost += self.suite.import_cost[file]
            worker.queue.extend(decision.tests)
            worker.asked = False
        return cost

    def _runnable(self, worker: SimWorker) -> int | None:
        """The test the worker starts as soon as its loop comes round, if any."""
        queue = worker.queue
        return queue[0] if len(queue) >= 2 or (queue and worker.drained) else None

    def _flush(
        self, worker: SimWorker, want_more: bool = False, running: int | None = None
    ) -> None:
        if not (worker.batch or want_more or worker.told_running != (running is not None)):
            return
        self._send(worker, Progress(worker.name, tuple(worker.batch), want_more, running))
        worker.batch.clear()
        worker.told_running = running is not None
        worker.last_flush = self.now

    def _loop(self, worker: SimWorker) -> None:
        """``pytest_runtestloop`` from its top until the worker runs, imports or blocks."""
        cost = self._pump(worker)
        if cost:
            worker.state = "busy"
            self._push(self.now + cost, "imported", worker.name)
            return
        queue = worker.queue
        if len(queue) >= 2 or (queue and worker.drained):
            item = queue.popleft()
            if not worker.drained and not worker.asked and len(queue) <= LOW_WATER:
                worker.asked = True
                self._flush(worker, want_more=True, running=item)
            elif not worker.told_running:
                self._flush(worker, running=item)
            worker.running = item
            worker.state = "busy"
            self._push(self.now + self.suite.actual[item], "finish", worker.name)
        elif worker.drained and not queue:
            self._flush(worker)
            worker.state = "ended"
        else:
            if not worker.asked and not worker.drained:
                worker.asked = True
                self._flush(worker, want_more=True)
            else:
                self._flush(worker)
            worker.state = "blocked"


# ---------------------------------------------------------------------------- suites

STRATEGIES = ["load", "time", "file", "suite", "round-robin"]


@st.composite
def suites(draw: st.DrawFn, strategies: Sequence[str] = STRATEGIES) -> Suite:
    count = draw(st.integers(1, 40))
    file_count = draw(st.integers(1, 6))
    files = draw(st.lists(st.integers(0, file_count - 1), min_size=count, max_size=count))
    grouped = draw(st.booleans())
    groups = draw(
        st.lists(
            st.sampled_from([None, None, "g1", "g2"] if grouped else [None]),
            min_size=count,
            max_size=count,
        )
    )
    # Fast tests, and tests predicted above feed_seconds (0.25 s), which are fed alone.
    estimates = draw(
        st.lists(
            st.one_of(st.floats(0.001, 0.05), st.floats(0.05, 2.0)), min_size=count, max_size=count
        )
    )
    # Most take about their estimate; some take many times longer (stragglers).
    factors = draw(
        st.lists(
            st.one_of(st.floats(0.5, 1.5), st.floats(3.0, 10.0)), min_size=count, max_size=count
        )
    )
    stdevs = draw(
        st.lists(
            st.one_of(st.none(), st.just(0.0), st.floats(0.0, 0.3)), min_size=count, max_size=count
        )
    )
    workers = draw(st.integers(1, 8))
    first_wave = draw(st.integers(1, workers))
    starts = [draw(st.floats(0.0, 0.3)) for _ in range(first_wave)]
    starts += [draw(st.floats(0.0, 3.0)) for _ in range(workers - first_wave)]
    return Suite(
        strategy=draw(st.sampled_from(list(strategies))),
        files=files,
        groups=groups,
        estimates=estimates,
        actual=[e * f for e, f in zip(estimates, factors, strict=True)],
        stdevs=stdevs,
        import_cost=draw(
            st.lists(
                st.one_of(st.just(0.0), st.floats(0.0, 0.1), st.floats(0.5, 3.0)),
                min_size=file_count,
                max_size=file_count,
            )
        ),
        workers=workers,
        first_wave=first_wave,
        starts=starts,
        owner=draw(
            st.lists(st.integers(0, first_wave - 1), min_size=file_count, max_size=file_count)
        ),
        latency=draw(st.sampled_from([0.0, 0.001, 0.02])),
    )


#: Issue 13's shape: gw1's first test is predicted above ``feed_seconds`` (0.25 s), so it
#: comes alone, and it is in a file that gw0 collected: gw1 spends 1.5 s importing it, and
#: only then asks for the next test, which it must know before it starts this one (its
#: first request came before gw0 had collected, when there was no scheduler to answer).
#: Timed from its assignment (bar 0.4 + 0.5 s), the test "straggled" before it had
#: started, and the request waited for it to finish: forever.
HEAVY_IMPORT = Suite(
    strategy="time",
    files=[1, 1, 0, 0, 0, 0],
    groups=[None] * 6,
    estimates=[0.4, 0.4, 0.02, 0.02, 0.02, 0.02],
    actual=[0.4, 0.4, 0.02, 0.02, 0.02, 0.02],
    stdevs=[0.0] * 6,
    import_cost=[0.0, 1.5],
    workers=2,
    first_wave=2,
    starts=[0.2, 0.0],
    owner=[0, 0],
    latency=0.001,
)


#: ``load`` without history (numpy.lib's shape): gw0's first chunk is its own file's
#: four long tests; gw1 runs through the quick ones and would idle while gw0 runs the
#: long ones one after another.  It takes back what gw0 has not started.
LONG_CHUNK = Suite(
    strategy="load",
    files=[0] * 4 + [1] * 12,
    groups=[None] * 16,
    estimates=[0.05] * 16,
    actual=[1.0] * 4 + [0.01] * 12,
    stdevs=[None] * 16,
    import_cost=[0.0, 0.0],
    workers=2,
    first_wave=2,
    starts=[0.0, 0.0],
    owner=[0, 1],
    latency=0.001,
)


@settings(max_examples=400, deadline=None)
@given(suites())
@example(HEAVY_IMPORT)
@example(LONG_CHUNK)
def test_every_run_terminates_with_every_test_run_once_and_every_request_answered(
    suite: Suite,
) -> None:
    Simulation(suite).run()


def test_an_idle_worker_takes_back_tests_a_busy_one_has_not_started() -> None:
    simulation = Simulation(LONG_CHUNK)
    simulation.run()
    reclaims = [line for line in simulation.log if "Reclaim(" in line]
    assert reclaims, "\n".join(simulation.log)
    # gw0 ran three of the four long tests in a row, gw1 the fourth: not four in a row.
    assert simulation.now < 3.5, "\n".join(simulation.log)


def test_a_straggler_is_still_found() -> None:
    """Timing tests from their start does not blind the scheduler: a test with history
    that runs ten times its mean still marks its worker, and the run still ends."""
    suite = dataclasses.replace(HEAVY_IMPORT, actual=[4.0, 0.4, 0.02, 0.02, 0.02, 0.02])
    simulation = Simulation(suite)
    simulation.run()
    assert isinstance(simulation.scheduler, PlanScheduler)
    assert simulation.scheduler.straggler_tests == [0]


# ---------------------------------------------------------------------------- the harness
# The property is only as good as the simulator: the scheduler as it was before issue 13
# was fixed must be caught.


class JudgesFromAssignment(PlanScheduler):
    """Broken on purpose, as before issue 13: a worker's first test is timed from when it
    was assigned (or the test before it finished), whether it started or not."""

    def test_started(self, worker: str, test: int, now: float = 0.0) -> list[Decision]:
        return []

    def worker_idle(self, worker: str, now: float = 0.0) -> list[Decision]:
        return []

    def worker_joined(self, worker: str, now: float = 0.0) -> list[Decision]:
        decisions = super().worker_joined(worker, now)
        self._time_first(worker, now)
        return decisions

    def test_finished(self, worker: str, test: int, now: float = 0.0) -> list[Decision]:
        decisions = super().test_finished(worker, test, now)
        self._time_first(worker, now)
        return decisions

    def _time_first(self, worker: str, now: float) -> None:
        pending = self._pending.get(worker)
        if pending:
            self._started[worker] = (pending[0], now)


def test_the_simulator_finds_the_hang_of_timing_tests_from_their_assignment() -> None:
    suite = HEAVY_IMPORT
    broken = JudgesFromAssignment(
        test_files=suite.files,
        unit_keys=[None] * len(suite.files),
        estimates=suite.estimates,
        stdevs=suite.stdevs,
        owners={0: "gw0", 1: "gw0"},
        planned_workers=suite.workers,
    )
    with pytest.raises(SimulationViolation, match="the run hangs since") as caught:
        Simulation(suite, broken).run()
    assert "unanswered requests: {'gw1'" in str(caught.value)
