"""``LoadScheduler``: events in, decisions out, driven on plain data.

The unit tests pin single behaviours; the property tests drive whole simulated runs
(workers joining, asking, finishing, crashing, being replaced, a stop) and check after
every event that the scheduler's view of the run is a consistent partition of the tests,
and that every chunk was taken where file affinity says it must come from.

A suite is given as ``test_files`` (the file ordinal of each canonical test, -1 for a
test outside any file) and ``owners`` (file -> the worker that collected it).  A single
file nobody owns, ``[0] * n``, is one shared queue: the behaviour before files existed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parallel_exec.scheduling import (
    Assign,
    Decision,
    Drain,
    LoadScheduler,
    Reclaim,
    TestPlanInput,
    make_scheduler,
)


def one_file(test_count: int) -> list[int]:
    """``test_count`` tests in one file that nobody owns: a single shared queue."""
    return [0] * test_count


def single_queue(test_count: int, workers: int, chunk_divisor: int = 2) -> LoadScheduler:
    return LoadScheduler(one_file(test_count), {}, workers, chunk_divisor=chunk_divisor)


def only_assign(decisions: list[Decision]) -> Assign:
    assert len(decisions) == 1
    (decision,) = decisions
    assert isinstance(decision, Assign), decision
    return decision


def chunk_sizes(test_count: int, workers: int) -> list[int]:
    """Sizes of successive chunks when one worker keeps asking until it is drained."""
    scheduler = single_queue(test_count, workers)
    sizes: list[int] = []
    decisions = scheduler.worker_joined("gw0")
    while not isinstance(decisions[0], Drain):
        sizes.append(len(only_assign(decisions).tests))
        decisions = scheduler.work_requested("gw0")
    return sizes


# ---------------------------------------------------------------------------- unit tests
# One shared queue (the behaviour every layout reduces to when there is a single file).


def test_guided_chunks_shrink_to_single_tests() -> None:
    # remaining / (2 * workers), rounded up: 100/4=25, 75/4->19, 56/4=14, 42/4->11, ...
    assert chunk_sizes(100, 2) == [25, 19, 14, 11, 8, 6, 5, 3, 3, 2, 1, 1, 1, 1]


def test_first_chunk_is_whole_queue_share() -> None:
    scheduler = single_queue(10, 1)
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (0, 1, 2, 3, 4))]
    assert scheduler.work_requested("gw0") == [Assign("gw0", (5, 6, 7))]
    assert scheduler.pending("gw0") == (0, 1, 2, 3, 4, 5, 6, 7)
    assert scheduler.unassigned == (8, 9)


def test_chunk_divisor_is_configurable() -> None:
    scheduler = single_queue(12, 2, chunk_divisor=1)
    assert only_assign(scheduler.worker_joined("gw0")).tests == (0, 1, 2, 3, 4, 5)


def test_worker_asking_when_queue_is_empty_is_drained() -> None:
    scheduler = single_queue(2, 4)
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (0,))]
    assert scheduler.worker_joined("gw1") == [Assign("gw1", (1,))]
    assert scheduler.work_requested("gw0") == [Drain("gw0")]
    # A drained worker gets nothing more, however often it asks.
    assert scheduler.work_requested("gw0") == []
    # A worker joining an empty queue is drained at once.
    assert scheduler.worker_joined("gw2") == [Drain("gw2")]


def test_zero_tests_drains_every_worker_and_is_done() -> None:
    scheduler = LoadScheduler([], {}, 3)
    assert scheduler.done
    assert scheduler.worker_joined("gw0") == [Drain("gw0")]
    assert scheduler.done


def test_unknown_worker_asking_gets_nothing() -> None:
    scheduler = single_queue(5, 1)
    assert scheduler.work_requested("never-joined") == []
    assert scheduler.unassigned == (0, 1, 2, 3, 4)


def test_pending_is_in_run_order_and_shrinks_as_tests_finish() -> None:
    scheduler = single_queue(10, 1)
    scheduler.worker_joined("gw0")
    scheduler.work_requested("gw0")
    assert scheduler.pending("gw0") == (0, 1, 2, 3, 4, 5, 6, 7)
    scheduler.test_finished("gw0", 0)
    scheduler.test_finished("gw0", 1)
    assert scheduler.pending("gw0") == (2, 3, 4, 5, 6, 7)
    assert scheduler.pending("unknown") == ()


def test_worker_lost_requeues_unfinished_tests_except_the_crashed_one() -> None:
    scheduler = single_queue(10, 1)
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
    scheduler = single_queue(4, 2)
    assert only_assign(scheduler.worker_joined("gw0")).tests == (0,)
    scheduler.worker_lost("gw0", crashed=None)
    assert scheduler.unassigned == (0, 1, 2, 3)
    assert not scheduler.done


def test_worker_lost_before_joining_changes_nothing() -> None:
    scheduler = single_queue(3, 1)
    assert scheduler.worker_lost("gw9", crashed=None) == []
    assert scheduler.unassigned == (0, 1, 2)


def test_drained_worker_lost_with_work_lets_a_replacement_take_it() -> None:
    scheduler = single_queue(2, 2)
    scheduler.worker_joined("gw0")
    scheduler.worker_joined("gw1")
    assert scheduler.work_requested("gw0") == [Drain("gw0")]
    scheduler.worker_lost("gw0", crashed=None)
    assert scheduler.unassigned == (0,)
    assert not scheduler.done
    assert scheduler.worker_joined("gw2") == [Assign("gw2", (0,))]


def test_stop_assigns_nothing_and_is_done_once_nothing_is_pending() -> None:
    scheduler = single_queue(10, 1)
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
    scheduler = single_queue(4, 1)
    scheduler.worker_joined("gw0")
    scheduler.stop()
    scheduler.worker_lost("gw0", crashed=0)
    assert scheduler.done
    assert scheduler.unassigned == (1, 2, 3)


def test_done_only_when_everything_finished() -> None:
    scheduler = single_queue(3, 1)
    assert not scheduler.done
    scheduler.worker_joined("gw0")
    scheduler.work_requested("gw0")
    assert scheduler.pending("gw0") == (0, 1, 2)
    for test in (0, 1):
        scheduler.test_finished("gw0", test)
        assert not scheduler.done
    scheduler.test_finished("gw0", 2)
    assert scheduler.done


def plan_input(test_files: list[int], owners: dict[int, str]) -> TestPlanInput:
    count = len(test_files)
    return TestPlanInput(
        nodeids=[f"test_{f}.py::test_{i}" for i, f in enumerate(test_files)],
        test_files=test_files,
        groups=[None] * count,
        owners=owners,
        estimates=[0.0] * count,
        stdevs=[None] * count,
    )


def test_make_scheduler() -> None:
    scheduler = make_scheduler("load", plan_input([0, 0, 1], {1: "gw0"}), 2)
    assert isinstance(scheduler, LoadScheduler)
    assert scheduler.owner(1) == "gw0"
    assert scheduler.owner(0) is None
    with pytest.raises(ValueError, match="no scheduler for strategy 'each'"):
        make_scheduler("each", plan_input([0, 0, 1], {}), 2)


# ---------------------------------------------------------------------------- unit tests
# Files and owners.


def test_own_files_come_first_in_file_order() -> None:
    #           file: 0  0  0  1  1  1  2  2  2  3   3   3
    scheduler = LoadScheduler(
        [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3, {0: "gw1", 1: "gw0", 2: "gw1", 3: "gw0"}, 1
    )
    # 12 / 2 = 6: exactly gw0's two files, lower ordinal first.
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (3, 4, 5, 9, 10, 11))]
    # 6 / 2 = 3: gw1's first file.
    assert scheduler.worker_joined("gw1") == [Assign("gw1", (0, 1, 2))]
    assert scheduler.worker_joined("gw1") == [Assign("gw1", (6, 7))]  # 3 / 2 -> 2
    assert [scheduler.owner(f) for f in range(4)] == ["gw1", "gw0", "gw1", "gw0"]


def test_unowned_files_come_after_own_files() -> None:
    scheduler = LoadScheduler([0, 0, 1, 1, 2, 2], {2: "gw0"}, 1)
    # A chunk of 3: gw0's own file 2 first, then the first unowned file.
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (4, 5, 0))]
    # Taking from an unowned file makes it the taker's.
    assert scheduler.owner(0) == "gw0"
    assert scheduler.owner(1) is None
    assert scheduler.unassigned == (1, 2, 3)
    # Its own file 0 before the unowned file 1.
    assert scheduler.work_requested("gw0") == [Assign("gw0", (1, 2))]
    assert scheduler.owner(1) == "gw0"


def test_unowned_files_are_taken_in_file_order() -> None:
    scheduler = LoadScheduler([0, 1, 1, 2, 3, 3], {0: "gw1", 2: "gw1"}, 1)
    # 6 / 2 = 3: gw0 owns nothing; the unowned files 1 and 3, in order.
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (1, 2, 4))]
    assert scheduler.owner(1) == scheduler.owner(3) == "gw0"


def test_own_and_unowned_work_is_never_mixed_with_stolen_work() -> None:
    scheduler = LoadScheduler([0, 0, 1, 1, 2, 2], {0: "gw1", 1: "gw0", 2: "gw1"}, 1)
    # The chunk would be 3, but gw0 has only its own two tests and nothing is unowned:
    # it gets those and steals nothing while it has work of its own.
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (2, 3))]
    assert scheduler.owner(0) == scheduler.owner(2) == "gw1"


def test_file_less_tests_are_unowned() -> None:
    scheduler = LoadScheduler([-1, -1, 0, 0], {0: "gw1"}, 1)
    assert scheduler.owner(-1) is None
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (0, 1))]


def test_stealing_takes_the_last_file_of_the_worker_with_most_unassigned() -> None:
    #         file: 0  0  1  1  2  2  2
    test_files = [0, 0, 1, 1, 2, 2, 2]
    owners = {0: "gw1", 1: "gw1", 2: "gw2"}
    # gw1 holds 4 unassigned tests, gw2 holds 3: gw1 is the victim.
    scheduler = LoadScheduler(test_files, owners, 1)
    # 7 / 2 -> 4, but a steal takes from one file only: gw1's last one.
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (2, 3))]
    assert scheduler.owner(1) == "gw0"
    assert scheduler.owner(0) == "gw1"
    # gw0's own file 1 is empty; now gw2 has the most (3 against 2); 5 / 2 -> 3.
    assert scheduler.work_requested("gw0") == [Assign("gw0", (4, 5, 6))]
    assert scheduler.owner(2) == "gw0"
    assert scheduler.work_requested("gw0") == [Assign("gw0", (0,))]
    assert scheduler.owner(0) == "gw0"
    # gw0 owns file 0 now: its last test is gw0's own work, not a steal.
    assert scheduler.work_requested("gw0") == [Assign("gw0", (1,))]
    assert scheduler.work_requested("gw0") == [Drain("gw0")]


def test_stolen_file_is_the_victims_last_with_work_left() -> None:
    scheduler = LoadScheduler([0, 1, 1, 2], {0: "gw1", 1: "gw1", 2: "gw1"}, 1)
    assert scheduler.worker_joined("gw1") == [Assign("gw1", (0, 1))]
    # gw1's file 1 still has test 2, file 2 has test 3: the last file is 2.
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (3,))]
    assert scheduler.owner(2) == "gw0"
    # gw1 keeps file 1 and is fed from it.
    assert scheduler.work_requested("gw1") == [Assign("gw1", (2,))]


def test_a_victim_that_never_joined_can_be_stolen_from() -> None:
    scheduler = LoadScheduler([0, 0, 0, 0], {0: "gw7"}, 2)
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (0,))]
    assert scheduler.owner(0) == "gw0"


def test_owners_of_files_without_tests_are_ignored() -> None:
    scheduler = LoadScheduler([0, 2], {1: "gw1", 2: "gw1", 5: "gw0"}, 1)
    assert scheduler.owner(1) is None
    assert scheduler.owner(5) is None
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (0,))]


def test_worker_lost_clears_its_ownership_and_requeues_per_file() -> None:
    #                  file: 0  0  0  1  1  1  2  2
    scheduler = LoadScheduler([0, 0, 0, 1, 1, 1, 2, 2], {0: "gw0", 2: "gw1"}, 1)
    # 8 / 2 = 4: gw0's file 0, then the first test of unowned file 1.
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (0, 1, 2, 3))]
    assert scheduler.owner(1) == "gw0"
    assert scheduler.worker_joined("gw1") == [Assign("gw1", (6, 7))]
    scheduler.test_finished("gw0", 0)

    scheduler.worker_lost("gw0", crashed=1)

    assert scheduler.owner(0) is None
    assert scheduler.owner(1) is None
    assert scheduler.owner(2) == "gw1"
    # Each unfinished test goes back to the front of its own file's queue.
    assert scheduler.unassigned == (2, 3, 4, 5)
    # The files are unowned now, so gw1 takes them without stealing: file order.
    assert scheduler.work_requested("gw1") == [Assign("gw1", (2, 3))]
    assert scheduler.owner(0) == scheduler.owner(1) == "gw1"


def test_worker_lost_keeps_files_another_worker_took_over() -> None:
    scheduler = LoadScheduler([0, 0, 0, 0], {0: "gw0"}, 2)
    assert scheduler.worker_joined("gw0") == [Assign("gw0", (0,))]
    assert scheduler.worker_joined("gw1") == [Assign("gw1", (1,))]  # stolen: gw1's now
    scheduler.worker_lost("gw0", crashed=None)
    assert scheduler.owner(0) == "gw1"
    assert scheduler.unassigned == (0, 2, 3)


@pytest.mark.parametrize(
    ("test_files", "owners", "workers"),
    [
        ([0] * 10 + [1] * 30 + [2] * 3, {1: "gw0"}, 2),
        ([0] * 50, {0: "gw1"}, 3),
        ([-1, -1] + [3] * 20 + [4] * 20, {3: "gw1", 4: "gw1"}, 1),
    ],
)
def test_chunks_never_exceed_the_guided_bound(
    test_files: list[int], owners: dict[int, str], workers: int
) -> None:
    scheduler = LoadScheduler(test_files, owners, workers)
    for worker in ("gw0", "gw1"):
        scheduler.worker_joined(worker)
    for _ in range(len(test_files) + 2):
        for worker in ("gw0", "gw1"):
            remaining = len(scheduler.unassigned)
            decisions = scheduler.work_requested(worker)
            if decisions and isinstance(decisions[0], Assign):
                assert 1 <= len(decisions[0].tests) <= math.ceil(remaining / (2 * workers))
    assert scheduler.unassigned == ()


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
class Layout:
    """A suite: the file of each test, and which of the first workers owns which file."""

    test_files: tuple[int, ...]
    owners: dict[int, str]
    workers: int


@st.composite
def layouts(draw: st.DrawFn, max_workers: int = 16) -> Layout:
    """Files ascend with gaps (files without tests), file-less tests first, random owners
    among the simulated workers (some files unowned)."""
    workers = draw(st.integers(1, max_workers))
    file_less = draw(st.sampled_from([0, 0, 0, 1, 3]))
    test_files = [-1] * file_less
    owners: dict[int, str] = {}
    ordinal = -1
    for size in draw(st.lists(st.integers(1, 40), max_size=12)):
        ordinal += draw(st.integers(1, 3))
        test_files += [ordinal] * size
        owner = draw(st.none() | st.integers(0, workers - 1))
        if owner is not None:
            owners[ordinal] = f"gw{owner}"
    return Layout(tuple(test_files), owners, workers)


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

    Before every feed it also takes a snapshot of the unassigned tests per file and of
    the files' owners, and checks that the chunk came from where affinity says: the
    worker's own files first, then unowned ones, and only then the last file of the
    worker with the most unassigned tests; and that files it took from became its own.
    """

    def __init__(self, test_files: Sequence[int], owners: Mapping[int, str], workers: int) -> None:
        self.test_files = tuple(test_files)
        self.test_count = len(test_files)
        self.files = sorted(set(test_files))
        self.planned = workers
        self.scheduler = LoadScheduler(test_files, owners, workers)
        self.queues: dict[str, list[int]] = {}
        self.drained: set[str] = set()
        self.lost: set[str] = set()
        self.finishes: Counter[int] = Counter()
        self.stopped = False
        self.steals = 0
        self.reclaims = 0
        self._next_id = 0
        for _ in range(workers):
            self.join()

    @classmethod
    def single_file(cls, test_count: int, workers: int) -> SimulatedRun:
        return cls(one_file(test_count), {}, workers)

    @property
    def live(self) -> list[str]:
        return sorted(self.queues, key=lambda w: int(w[2:]))

    # ------------------------------------------------------------------ events

    def join(self) -> str:
        worker = f"gw{self._next_id}"
        self._next_id += 1
        self.queues[worker] = []
        before = self.snapshot()
        self.apply(worker, self.scheduler.worker_joined(worker), before)
        return worker

    def ask(self, worker: str) -> None:
        was_drained = worker in self.drained
        before = self.snapshot()
        decisions = self.scheduler.work_requested(worker)
        if was_drained:
            assert decisions == [], "a drained worker must not get anything more"
        else:
            self.apply(worker, decisions, before)

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
        self.lost.add(worker)
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

    def snapshot(self) -> tuple[dict[int, list[int]], dict[int, str | None]]:
        """Unassigned tests per file (queue order) and each file's owner, right now."""
        queues: dict[int, list[int]] = {f: [] for f in self.files}
        for test in self.scheduler.unassigned:
            queues[self.test_files[test]].append(test)
        return queues, {f: self.scheduler.owner(f) for f in self.files}

    def apply(
        self,
        worker: str,
        decisions: list[Decision],
        before: tuple[dict[int, list[int]], dict[int, str | None]],
    ) -> None:
        assert len(decisions) == 1, decisions
        (decision,) = decisions
        if isinstance(decision, Reclaim):
            self.give_back(worker, decision)
            return
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
        self.check_affinity(worker, decision.tests, *before)
        self.queues[worker].extend(decision.tests)

    def give_back(self, asker: str, reclaim: Reclaim) -> None:
        """Nothing was unassigned: the holder gives back what it asked for, beyond the
        test it runs and the next (here at once, so the asker is answered at once)."""
        holder = reclaim.worker
        assert holder != asker, reclaim
        assert holder in self.queues, reclaim
        assert not self.stopped, "nothing may be reclaimed after stop()"
        queue = self.queues[holder]
        assert reclaim.tests, reclaim
        assert set(reclaim.tests) <= set(queue[2:]), (reclaim, queue)
        assert list(reclaim.tests) == queue[-len(reclaim.tests) :], "the holder's last tests"
        self.queues[holder] = [t for t in queue if t not in reclaim.tests]
        self.reclaims += 1
        # What the asker is fed from: the tests given back at the front of their files,
        # which nobody owns now.
        queues, owners = self.snapshot()
        for test in reversed(reclaim.tests):
            queues[self.test_files[test]].insert(0, test)
            owners[self.test_files[test]] = None
        decisions = self.scheduler.tests_released(holder, reclaim.tests)
        self.apply(asker, decisions, (queues, owners))

    def check_affinity(
        self,
        worker: str,
        tests: tuple[int, ...],
        queues: dict[int, list[int]],
        owners: dict[int, str | None],
    ) -> None:
        remaining = sum(len(q) for q in queues.values())
        bound = max(1, math.ceil(remaining / (2 * self.planned)))
        assert 1 <= len(tests) <= bound, f"chunk of {len(tests)} with {remaining} left"

        own = [t for f in self.files if owners[f] == worker for t in queues[f]]
        free = [t for f in self.files if owners[f] is None for t in queues[f]]
        taken_from = {self.test_files[t] for t in tests}
        if own or free:
            # Own files in file order, then unowned ones, each from the front of its queue.
            assert list(tests) == (own + free)[:bound]
            stolen_from_others = False
        else:
            # Nothing own, nothing unowned: one file, the victim's last with work left.
            load = Counter({w: 0 for w in owners.values() if w is not None})
            for f in self.files:
                if owners[f] is not None:
                    load[owners[f]] += len(queues[f])
            assert len(taken_from) == 1, f"a steal took from several files: {taken_from}"
            (file,) = taken_from
            victim = owners[file]
            assert victim is not None
            assert victim != worker
            assert load[victim] == max(load.values()), (victim, load)
            assert file == max(f for f in self.files if owners[f] == victim and queues[f])
            assert list(tests) == queues[file][:bound]
            stolen_from_others = True
            self.steals += 1
        # The property: a worker is fed from an unowned or stolen file only when it had
        # no unassigned tests left in its own files.
        for test in tests:
            if owners[self.test_files[test]] != worker:
                assert set(own) <= set(tests), "fed from elsewhere with own work left"
        assert stolen_from_others or all(owners[f] in (worker, None) for f in taken_from)
        # Every file taken from is now the worker's.
        for file in taken_from:
            assert self.scheduler.owner(file) == worker
        for file in set(self.files) - taken_from:
            assert self.scheduler.owner(file) == owners[file]

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
        # Unassigned tests stay grouped by file, files in order.
        files = [self.test_files[t] for t in unassigned]
        assert files == sorted(files)
        # A lost worker owns nothing (unless a worker of the same id joined again).
        for file in self.files:
            assert scheduler.owner(file) not in self.lost - set(self.queues)


def play_all(run: SimulatedRun, events: list[Step]) -> None:
    run.check()
    for step in events:
        run.play(step)
    run.run_to_end()


@settings(max_examples=150, deadline=None)
@given(
    test_count=st.integers(0, 300),
    workers=st.integers(1, 16),
    events=steps,
)
def test_simulated_run_finishes_every_test_exactly_once(
    test_count: int, workers: int, events: list[Step]
) -> None:
    run = SimulatedRun.single_file(test_count, workers)
    play_all(run, events)

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
    run = SimulatedRun.single_file(test_count, workers)
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


@settings(max_examples=200, deadline=None)
@given(layout=layouts(), events=steps)
def test_simulated_run_over_files_finishes_every_test_exactly_once(
    layout: Layout, events: list[Step]
) -> None:
    run = SimulatedRun(layout.test_files, layout.owners, layout.workers)
    play_all(run, events)

    assert run.scheduler.done
    assert run.scheduler.unassigned == ()
    assert run.finishes == Counter(range(run.test_count))


@settings(max_examples=150, deadline=None)
@given(layout=layouts(), before=steps, after=steps)
def test_simulated_run_over_files_with_stop_never_runs_a_test_twice(
    layout: Layout, before: list[Step], after: list[Step]
) -> None:
    run = SimulatedRun(layout.test_files, layout.owners, layout.workers)
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
    assert finished | unassigned == set(range(run.test_count))


@settings(max_examples=150, deadline=None)
@given(layout=layouts(max_workers=6))
def test_when_every_worker_collected_files_each_starts_on_its_own(layout: Layout) -> None:
    """The split collection case: the files with tests are dealt out to the first workers
    so that each owns at least one.  Each worker's first chunk then comes from files it
    collected itself (topped up, if they run short, with file-less tests, which nobody
    owns): nothing is imported twice before some worker has run out of its own work."""
    files = sorted({f for f in layout.test_files if f >= 0})
    workers = min(layout.workers, len(files)) or 1
    owners = {f: f"gw{i % workers}" for i, f in enumerate(files)}
    run = SimulatedRun(layout.test_files, owners, workers)
    for worker, queue in run.queues.items():
        mine = {f for f, w in owners.items() if w == worker}
        assert queue or not layout.test_files
        assert {layout.test_files[t] for t in queue} <= mine | {-1}
    assert run.steals == 0
    run.run_to_end()
    assert run.finishes == Counter(range(run.test_count))


# ------------------------------------------------------------------ taking work back


def all_held_by_gw0(test_count: int) -> tuple[LoadScheduler, tuple[int, ...]]:
    """A run of two planned workers where gw0 asked until nothing was unassigned: what
    it holds, in order (none of it started)."""
    scheduler = single_queue(test_count, 2)
    assigned = list(only_assign(scheduler.worker_joined("gw0")).tests)
    while scheduler.unassigned:
        assigned.extend(only_assign(scheduler.work_requested("gw0")).tests)
    held = scheduler.pending("gw0")
    assert held == tuple(assigned)  # in the order assigned, the first chunk first
    return scheduler, held


def test_a_worker_out_of_work_takes_back_the_later_half_of_what_another_holds() -> None:
    scheduler, held = all_held_by_gw0(12)
    # Nothing unassigned: gw0 gives back the later half of what it holds beyond the
    # test it runs and the next; gw1 waits for the answer.
    spare = len(held) - 2
    assert scheduler.worker_joined("gw1") == [Reclaim("gw0", held[-math.ceil(spare / 2) :])]
    assert scheduler.work_requested("gw1") == []  # still waiting: asked once
    given = held[-math.ceil(spare / 2) :][1:]  # gw0 had started one of them meanwhile
    # gw1 gets the first of them as a guided chunk; the rest wait, unassigned.
    assert scheduler.tests_released("gw0", given) == [Assign("gw1", given[:1])]
    assert scheduler.pending("gw0") == tuple(t for t in held if t not in given)
    assert scheduler.unassigned == given[1:]


def test_a_holder_that_gave_nothing_is_not_asked_again_until_a_test_of_it_finishes() -> None:
    scheduler, held = all_held_by_gw0(8)
    (reclaim,) = scheduler.worker_joined("gw1")
    assert isinstance(reclaim, Reclaim)
    # It had started them all by then: gw1 is drained, not sent to ask gw0 again.
    assert scheduler.tests_released("gw0", ()) == [Drain("gw1")]
    assert scheduler.worker_joined("gw2") == [Drain("gw2")]
    scheduler.test_finished("gw0", held[0])
    assert isinstance(scheduler.worker_joined("gw3")[0], Reclaim)


def test_a_holder_lost_while_asked_gives_the_waiting_worker_its_tests() -> None:
    scheduler, held = all_held_by_gw0(8)
    assert isinstance(scheduler.worker_joined("gw1")[0], Reclaim)
    (answer,) = scheduler.worker_lost("gw0", crashed=held[0])
    assert isinstance(answer, Assign)
    assert answer.worker == "gw1"
    assert answer.tests == held[1 : 1 + len(answer.tests)]
    # Its answer, if it still comes, changes nothing: what it held went back with it.
    assert scheduler.tests_released("gw0", held[-2:]) == []
    assert scheduler.pending("gw1") + scheduler.unassigned == held[1:]
