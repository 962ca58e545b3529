"""The learning-outcome record: how well a run used its workers, graded 0-1.

Computed from plain data (what each test took, on which worker, when) so it is the same
whether it is read in the terminal, in ``--report-outcome``, in the JSON report or in
the history, and so it is unit-tested without a run.  Definitions (docs/learning.md):

- busy time of a worker: the sum of the durations (setup + call + teardown) of the tests
  it ran; start-up, collection and messaging are not busy time.
- wall: from the start of the worker pool to the last test result.
- speedup: sum of all test durations (the sequential estimate) / wall.
- efficiency: total busy time / (workers x wall).
- balance: mean busy time / largest busy time over the workers that ran tests (1.0 when
  every worker was busy for as long as the busiest).
- LB (lower bound of the makespan): max(total work / workers, longest test).
- straggler: a test that took longer than its prediction's mean + k x stdev (and at
  least ``STRAGGLER_MIN_EXCESS`` seconds more); only tests with history can straggle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: A test straggles when it runs longer than mean + STRAGGLER_K * stdev of its history.
STRAGGLER_K = 3.0
#: ... and by at least this many seconds (so that noise on fast tests is not a straggle).
STRAGGLER_MIN_EXCESS = 0.5


class Straggler(BaseModel):
    model_config = ConfigDict(frozen=True)

    nodeid: str
    worker: str
    predicted: float
    actual: float


class LearningOutcome(BaseModel):
    """One run's figures, stored in the history and printed in the summary."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = 1
    tool: str = "parallel_exec"
    version: str
    run_id: str
    strategy: str
    workers: int
    tests_executed: int
    passed: int
    failed: int
    skipped: int
    errors: int = 0
    not_run: int = 0
    wall_time: float = Field(description="seconds from pool start to the last result")
    sequential_estimate: float = Field(description="sum of all test durations, seconds")
    speedup: float
    efficiency: float = Field(ge=0.0, le=1.0)
    balance: float = Field(ge=0.0, le=1.0)
    stragglers: int
    straggler_tests: list[Straggler] = Field(default_factory=list)
    predicted_makespan: float | None = None
    actual_makespan: float
    lower_bound: float
    actual_over_lower_bound: float | None
    retries: int = 0
    flaky_tests: list[str] = Field(default_factory=list)
    worker_failures: int = 0
    #: What the guards did (``--test-timeout``/``--run-timeout``, ``--max-worker-memory``,
    #: ``--slow-after``, ``--max-worker-tests``, leaked processes).
    timed_out: int = Field(0, description="tests ended for running past their time limit")
    over_memory: int = Field(0, description="tests ended for passing --max-worker-memory")
    slow_tests: int = Field(0, description="tests reported slow (--slow-after)")
    recycled_workers: int = Field(0, description="workers replaced between two tests")
    leaked_processes: int = Field(0, description="processes tests left running")
    #: ``--shard I/N``: which shard of which matrix, and the plan's figures.
    shard: str | None = Field(None, description="'I/N' of a sharded run")
    shard_run_id: str | None = Field(None, description="the matrix's id")
    shard_plan: str | None = Field(None, description="the plan's fingerprint")
    shard_predicted_work: float | None = Field(
        None, description="this shard's predicted seconds of work"
    )
    matrix_largest_predicted_work: float | None = Field(
        None, description="the largest shard's predicted seconds of work"
    )
    matrix_lower_bound: float | None = Field(
        None, description="max(total work / N, longest unit): no split can beat it"
    )
    reward: float = Field(ge=0.0, le=1.0)


@dataclass(frozen=True)
class RanTest:
    """What the grader needs of one finished test."""

    nodeid: str
    worker: str
    duration: float
    outcome: str
    #: Earlier failed attempts (``--retries``): (worker, seconds) each; busy time too.
    attempts: tuple[tuple[str, float], ...] = ()


def grade(
    *,
    all_complete: bool,
    all_passed: bool,
    efficiency: float,
    stragglers: int,
    retries: int,
    execution_failed: bool,
) -> float:
    """The reward table (docs/learning.md), graded from the worst case up.

    | 1.0 | all tests pass, efficiency > 95 %, no stragglers |
    | 0.9 | all tests complete, efficiency > 85 %            |
    | 0.7 | all tests complete, efficiency > 70 %            |
    | 0.5 | tests complete with retries                      |
    | 0.3 | some worker failures, results incomplete         |
    | 0.0 | execution failed or timed out                    |

    Failures are checked first (0.0, then 0.3), then retries: a run that needed a
    retry is graded 0.5 whatever its efficiency, because the table gives retried runs a
    row of their own and the rows above it describe runs that completed without help.
    Then the efficiency rows, top to bottom.  A complete run without retries at or
    below 70 % efficiency is graded 0.5 too: under 0.7's bar, above an incomplete run.
    """
    if execution_failed:
        return 0.0
    if not all_complete:
        return 0.3
    if retries:
        return 0.5
    if all_passed and efficiency > 0.95 and stragglers == 0:
        return 1.0
    if efficiency > 0.85:
        return 0.9
    if efficiency > 0.70:
        return 0.7
    return 0.5


def find_stragglers(
    tests: Sequence[RanTest], predictions: Mapping[str, tuple[float, float]]
) -> list[Straggler]:
    """Tests that ran far beyond their history (``predictions``: nodeid -> mean, stdev)."""
    found = []
    for test in tests:
        known = predictions.get(test.nodeid)
        if known is None:
            continue
        mean, stdev = known
        bound = mean + STRAGGLER_K * stdev
        if test.duration > bound and test.duration - mean >= STRAGGLER_MIN_EXCESS:
            found.append(
                Straggler(
                    nodeid=test.nodeid,
                    worker=test.worker,
                    predicted=round(mean, 6),
                    actual=round(test.duration, 6),
                )
            )
    return found


def summarize(
    *,
    version: str,
    run_id: str,
    strategy: str,
    workers: int,
    tests: Sequence[RanTest],
    wall_time: float,
    not_run: int,
    worker_failures: int,
    execution_failed: bool,
    predictions: Mapping[str, tuple[float, float]] | None = None,
    predicted_makespan: float | None = None,
    retries: int = 0,
    flaky_tests: Sequence[str] = (),
    guards: Mapping[str, int] | None = None,
    shard: Mapping[str, Any] | None = None,
) -> LearningOutcome:
    counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    for test in tests:
        bucket = {"xfailed": "skipped", "xpassed": "passed"}.get(test.outcome, test.outcome)
        counts[bucket if bucket in counts else "failed"] += 1
    busy: dict[str, float] = {}
    for test in tests:
        busy[test.worker] = busy.get(test.worker, 0.0) + test.duration
        for worker, seconds in test.attempts:
            busy[worker] = busy.get(worker, 0.0) + seconds
    total = sum(busy.values())
    workers = max(1, workers)
    wall = max(wall_time, 1e-9)
    efficiency = min(1.0, total / (workers * wall)) if tests else 0.0
    largest = max(busy.values(), default=0.0)
    balance = (total / len(busy)) / largest if largest > 0 else 1.0
    longest = max((t.duration for t in tests), default=0.0)
    lower_bound = max(total / workers, longest)
    stragglers = find_stragglers(tests, predictions or {})
    all_complete = not_run == 0 and not execution_failed
    all_passed = counts["failed"] == 0 and counts["error"] == 0
    return LearningOutcome(
        version=version,
        run_id=run_id,
        strategy=strategy,
        workers=workers,
        tests_executed=len(tests),
        passed=counts["passed"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        errors=counts["error"],
        not_run=not_run,
        wall_time=round(wall_time, 6),
        sequential_estimate=round(total, 6),
        speedup=round(total / wall, 4),
        efficiency=round(efficiency, 4),
        balance=round(min(1.0, balance), 4),
        stragglers=len(stragglers),
        straggler_tests=stragglers,
        predicted_makespan=None if predicted_makespan is None else round(predicted_makespan, 6),
        actual_makespan=round(wall_time, 6),
        lower_bound=round(lower_bound, 6),
        actual_over_lower_bound=round(wall_time / lower_bound, 4) if lower_bound > 0 else None,
        retries=retries,
        flaky_tests=list(flaky_tests),
        worker_failures=worker_failures,
        **(guards or {}),  # type: ignore[arg-type]
        **(shard or {}),
        reward=grade(
            all_complete=all_complete,
            all_passed=all_passed,
            efficiency=efficiency,
            stragglers=len(stragglers),
            retries=retries,
            execution_failed=execution_failed,
        ),
    )
