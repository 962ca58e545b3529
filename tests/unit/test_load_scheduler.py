"""``LoadScheduler``: events in, decisions out, driven on plain data.

The unit tests pin single behaviours; the property tests drive whole simulated runs
(workers joining, asking, finishing, crashing, being replaced, a stop) and check after
every event that the scheduler's view of the run is a consistent partition of the tests.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parallel_exec.scheduling import Assign, Decision, Drain, LoadScheduler, make_scheduler


def only_assign(decisions: list[Decision]) -> Assign:
    assert len(decisions) == 1
    (decision,) = decisions
    assert isinstance(decision, Assign), decision
    return decision


def chunk_sizes(test_count: int, workers: int) -> list[int]:
    """Sizes of successive chunks when one worker keeps asking until it is drained."""
    scheduler = LoadScheduler(test_count, workers)
    sizes: list[int] = []
    decisions = scheduler.worker_joined("gw0")
    while not isinstance(decisions[0], Drain):
        sizes.append(len(only_assign(decisions).tests))
        decisions = scheduler.work_requested("gw0")
    return sizes


# ---------------------------------------------------------------------------- unit tests


def test_guided_chunks_shrink_to_single_tests() -> None:
    # remaining / (2 * workers), rounded up: 100/4=25, 75/4->19, 56/4=14, 42/4->11, ...
    assert chunk_sizes(100, 2) == [25, 19, 14, 11, 8, 6, 5, 3, 3, 2, 1, 1, 1, 1]


def test_first_chunk_is_whole_queue_share() -> None:
    scheduler = LoadScheduler(10, 1)
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (0, 1, 2, 3, 4))]
    assert scheduler.work_requested("gw0") == [Assign("gw0", (5, 6, 7))]
    assert scheduler.pending("gw0") == (0, 1, 2, 3, 4, 5, 6, 7)
    assert scheduler.unassigned == (8, 9)


def test_chunk_divisor_is_configurable() -> None:
    scheduler = LoadScheduler(12, 2, chunk_divisor=1)
    assert only_assign(scheduler.worker_joined("gw0")).tests == (0, 1, 2, 3, 4, 5)


def test_worker_asking_when_queue_is_empty_is_drained() -> None:
    scheduler = LoadScheduler(2, 4)
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (0,))]
    assert scheduler.worker_joined("gw1") == [Assign("gw1", (1,))]
    assert scheduler.work_requested("gw0") == [Drain("gw0")]
    # A drained worker gets nothing more, however often it asks.
    assert scheduler.work_requested("gw0") == []
    # A worker joining an empty queue is drained at once.
    assert scheduler.worker_joined("gw2") == [Drain("gw2")]


def test_zero_tests_drains_every_worker_and_is_done() -> None:
    scheduler = LoadScheduler(0, 3)
    assert scheduler.done
    assert scheduler.worker_joined("gw0") == [Drain("gw0")]
    assert scheduler.done


def test_unknown_worker_asking_gets_nothing() -> None:
    scheduler = LoadScheduler(5, 1)
    assert scheduler.work_requested("never-joined") == []
    assert scheduler.unassigned == (0, 1, 2, 3, 4)


def test_pending_is_in_run_order_and_shrinks_as_tests_finish() -> None:
    scheduler = LoadScheduler(10, 1)
    scheduler.worker_joined("gw0")
    scheduler.work_requested("gw0")
    assert scheduler.pending("gw0") == (0, 1, 2, 3, 4, 5, 6, 7)
    scheduler.test_finished("gw0", 0)
    scheduler.test_finished("gw0", 1)
    assert scheduler.pending("gw0") == (2, 3, 4, 5, 6, 7)
    assert scheduler.pending("unknown") == ()


def test_worker_lost_requeues_unfinished_tests_except_the_crashed_one() -> None:
    scheduler = LoadScheduler(10, 1)
    assert only_assign(scheduler.worker_joined("gw0")).tests == (0, 1, 2, 3, 4)
    assert only_assign(scheduler.worker_joined("gw1")).tests == (5, 6, 7)
    scheduler.test_finished("gw0", 0)

    assert scheduler.worker_lost("gw0", crashed=1) == []

    assert scheduler.pending("gw0") == ()
    # Requeued work goes to the front of the queue, in its original order.
    assert scheduler.unassigned == (2, 3, 4, 8, 9)
    assert only_assign(scheduler.work_requested("gw1")).tests == (2, 3, 4)
    assert scheduler.pending("gw1") == (5, 6, 7, 2, 3, 4)


def test_worker_lost_between_tests_requeues_everything_it_held() -> None:
    scheduler = LoadScheduler(4, 2)
    assert only_assign(scheduler.worker_joined("gw0")).tests == (0,)
    scheduler.worker_lost("gw0", crashed=None)
    assert scheduler.unassigned == (0, 1, 2, 3)
    assert not scheduler.done


def test_worker_lost_before_joining_changes_nothing() -> None:
    scheduler = LoadScheduler(3, 1)
    assert scheduler.worker_lost("gw9", crashed=None) == []
    assert scheduler.unassigned == (0, 1, 2)


def test_drained_worker_lost_with_work_lets_a_replacement_take_it() -> None:
    scheduler = LoadScheduler(2, 2)
    scheduler.worker_joined("gw0")
    scheduler.worker_joined("gw1")
    assert scheduler.work_requested("gw0") == [Drain("gw0")]
    scheduler.worker_lost("gw0", crashed=None)
    assert scheduler.unassigned == (0,)
    assert not scheduler.done
    assert scheduler.worker_joined("gw2") == [Assign("gw2", (0,))]


def test_stop_assigns_nothing_and_is_done_once_nothing_is_pending() -> None:
    scheduler = LoadScheduler(10, 1)
    scheduler.worker_joined("gw0")
    assert scheduler.pending("gw0") == (0, 1, 2, 3, 4)
    scheduler.stop()
    assert not scheduler.done  # gw0 still holds tests
    assert scheduler.work_requested("gw0") == [Drain("gw0")]
    assert scheduler.worker_joined("gw1") == [Drain("gw1")]
    for test in (0, 1, 2, 3, 4):
        scheduler.test_finished("gw0", test)
    assert scheduler.done
    assert scheduler.unassigned == (5, 6, 7, 8, 9)


def test_stop_then_loss_is_done_with_requeued_tests_unassigned() -> None:
    scheduler = LoadScheduler(4, 1)
    scheduler.worker_joined("gw0")
    scheduler.stop()
    scheduler.worker_lost("gw0", crashed=0)
    assert scheduler.done
    assert scheduler.unassigned == (1, 2, 3)


def test_done_only_when_everything_finished() -> None:
    scheduler = LoadScheduler(3, 1)
    assert not scheduler.done
    scheduler.worker_joined("gw0")
    scheduler.work_requested("gw0")
    assert scheduler.pending("gw0") == (0, 1, 2)
    for test in (0, 1):
        scheduler.test_finished("gw0", test)
        assert not scheduler.done
    scheduler.test_finished("gw0", 2)
    assert scheduler.done


def test_make_scheduler() -> None:
    assert isinstance(make_scheduler("load", 3, 2), LoadScheduler)
    with pytest.raises(ValueError, match="no scheduler for strategy 'each'"):
        make_scheduler("each", 3, 2)


# ---------------------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(test_count=st.integers(0, 2000), workers=st.integers(1, 16))
def test_chunks_are_guided_and_cover_the_queue(test_count: int, workers: int) -> None:
    sizes = chunk_sizes(test_count, workers)
    assert sum(sizes) == test_count
    assert sizes == sorted(sizes, reverse=True)
    if test_count:
        assert sizes[0] == math.ceil(test_count / (2 * workers))
        assert sizes[-1] == 1


@dataclass(frozen=True)
class Step:
    """One event of a simulated run; ``pick`` selects a worker among the live ones."""

    kind: str  # "ask" | "finish" | "lose" | "join" | "stop"
    pick: int
    crash_running: bool = False


steps = st.lists(
    st.builds(
        Step,
        kind=st.sampled_from(["ask", "ask", "finish", "finish", "finish", "lose", "join"]),
        pick=st.integers(0, 15),
        crash_running=st.booleans(),
    ),
    max_size=120,
)


class SimulatedRun:
    """Plays the controller and its workers around a ``LoadScheduler``.

    The simulation keeps its own model of each worker's queue, built only from the
    decisions the scheduler returned, and checks the scheduler against it after every
    event.  A crashed test is "finished" the moment the worker is lost (the controller
    reports it); any other test is finished when its worker runs it.
    """

    def __init__(self, test_count: int, workers: int) -> None:
        self.test_count = test_count
        self.planned = workers
        self.scheduler = LoadScheduler(test_count, workers)
        self.queues: dict[str, list[int]] = {}
        self.drained: set[str] = set()
        self.finishes: Counter[int] = Counter()
        self.stopped = False
        self._next_id = 0
        for _ in range(workers):
            self.join()

    @property
    def live(self) -> list[str]:
        return sorted(self.queues, key=lambda w: int(w[2:]))

    # ------------------------------------------------------------------ events

    def join(self) -> str:
        worker = f"gw{self._next_id}"
        self._next_id += 1
        self.queues[worker] = []
        self.apply(worker, self.scheduler.worker_joined(worker), joined=True)
        return worker

    def ask(self, worker: str) -> None:
        was_drained = worker in self.drained
        decisions = self.scheduler.work_requested(worker)
        if was_drained:
            assert decisions == [], "a drained worker must not get anything more"
        else:
            self.apply(worker, decisions)

    def finish_first(self, worker: str) -> None:
        queue = self.queues[worker]
        if not queue:
            return
        test = queue.pop(0)
        self.finishes[test] += 1
        assert self.scheduler.test_finished(worker, test) == []

    def lose(self, worker: str, crash_running: bool) -> None:
        queue = self.queues.pop(worker)
        self.drained.discard(worker)
        crashed = queue[0] if crash_running and queue else None
        if crashed is not None:
            self.finishes[crashed] += 1
        assert self.scheduler.worker_lost(worker, crashed) == []
        assert self.scheduler.pending(worker) == ()

    def stop(self) -> None:
        self.stopped = True
        self.scheduler.stop()

    def play(self, step: Step) -> None:
        live = self.live
        if step.kind == "join":
            if len(live) < self.planned:
                self.join()
        elif step.kind == "stop":
            self.stop()
        elif live:
            worker = live[step.pick % len(live)]
            if step.kind == "ask":
                self.ask(worker)
            elif step.kind == "finish":
                self.finish_first(worker)
            elif step.kind == "lose":
                self.lose(worker, step.crash_running)
        self.check()

    def run_to_end(self) -> None:
        """Every worker runs its queue and asks until drained; crashed ones are replaced."""
        while True:
            takers = [w for w in self.live if w not in self.drained]
            if not takers and self.scheduler.unassigned and not self.stopped:
                self.join()  # the controller replaces a lost worker
                self.check()
                continue
            busy = [w for w in self.live if self.queues[w] or w not in self.drained]
            if not busy:
                return
            for worker in busy:
                while self.queues[worker]:
                    self.finish_first(worker)
                    self.check()
                self.ask(worker)
                self.check()

    # ------------------------------------------------------------------ checking

    def apply(self, worker: str, decisions: list[Decision], joined: bool = False) -> None:
        assert len(decisions) == 1, decisions
        (decision,) = decisions
        assert decision.worker == worker
        if isinstance(decision, Drain):
            assert self.stopped or not self.scheduler.unassigned
            self.drained.add(worker)
            return
        assert not self.stopped, "nothing may be assigned after stop()"
        assert decision.tests, "an Assign must not be empty"
        held = {t for queue in self.queues.values() for t in queue}
        for test in decision.tests:
            assert 0 <= test < self.test_count
            assert test not in held, f"test {test} assigned twice"
            assert self.finishes[test] == 0, f"finished test {test} assigned again"
        self.queues[worker].extend(decision.tests)

    def check(self) -> None:
        scheduler = self.scheduler
        for worker, queue in self.queues.items():
            assert scheduler.pending(worker) == tuple(queue)
        assert all(count == 1 for count in self.finishes.values()), self.finishes
        held = [t for queue in self.queues.values() for t in queue]
        unassigned = list(scheduler.unassigned)
        finished = list(self.finishes)
        everything = held + unassigned + finished
        assert len(everything) == len(set(everything)), "a test is in two places at once"
        assert set(everything) == set(range(self.test_count)), "a test went missing"
        expected_done = not held and (self.stopped or not unassigned)
        assert scheduler.done is expected_done


@settings(max_examples=150, deadline=None)
@given(
    test_count=st.integers(0, 300),
    workers=st.integers(1, 16),
    events=steps,
)
def test_simulated_run_finishes_every_test_exactly_once(
    test_count: int, workers: int, events: list[Step]
) -> None:
    run = SimulatedRun(test_count, workers)
    run.check()
    for step in events:
        run.play(step)
    run.run_to_end()

    assert run.scheduler.done
    assert run.scheduler.unassigned == ()
    assert run.finishes == Counter(range(test_count))


@settings(max_examples=150, deadline=None)
@given(
    test_count=st.integers(0, 300),
    workers=st.integers(1, 16),
    before=steps,
    after=steps,
)
def test_simulated_run_with_stop_never_runs_a_test_twice(
    test_count: int, workers: int, before: list[Step], after: list[Step]
) -> None:
    run = SimulatedRun(test_count, workers)
    for step in before:
        run.play(step)
    run.play(Step("stop", 0))
    for step in after:
        run.play(step)
    run.run_to_end()

    assert run.scheduler.done
    finished = set(run.finishes)
    unassigned = set(run.scheduler.unassigned)
    assert all(count == 1 for count in run.finishes.values())
    assert finished.isdisjoint(unassigned)
    assert finished | unassigned == set(range(test_count))
