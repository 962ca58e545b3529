"""The end-of-run lines: figures a user can act on by default, the graded record with -v,
and a hint when one thing clearly bounds the run."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from parallel_exec.history.learning import RanTest, summarize
from parallel_exec.history.recording import OutcomeRecorder


def recorder(tests: list[RanTest], workers: int, wall: float) -> OutcomeRecorder:
    made = OutcomeRecorder(cast(pytest.Config, SimpleNamespace()), None, None)
    made.tests = tests
    made.outcome = summarize(
        version="0",
        run_id="r",
        strategy="time",
        workers=workers,
        tests=tests,
        wall_time=wall,
        not_run=0,
        worker_failures=0,
        execution_failed=False,
    )
    return made


def test_default_line_has_no_grading_terms() -> None:
    lines = recorder([RanTest("a.py::t", "gw0", 1.0, "passed")] * 2, 2, 1.1).summary_lines()
    assert lines[0].startswith("parallel_exec: 2 workers (time), wall 1.10s for 2.00s of tests:")
    assert "speedup 1.82x, efficiency 91%" in lines[0]
    for word in ("reward", "makespan", "actual/LB", "lower bound"):
        assert word not in "\n".join(lines)


def test_verbose_adds_the_graded_record() -> None:
    lines = recorder([RanTest("a.py::t", "gw0", 1.0, "passed")] * 2, 2, 1.1).summary_lines(True)
    assert any(line.startswith("parallel_exec: makespan ") and "reward" in line for line in lines)


def test_one_long_test_bounds_the_run() -> None:
    tests = [RanTest("slow.py::t", "gw0", 12.0, "passed")] + [
        RanTest(f"fast.py::t{i}", "gw1", 0.5, "passed") for i in range(4)
    ]
    lines = recorder(tests, 2, 12.3).summary_lines()
    assert lines[1] == (
        "parallel_exec: 1 test of 12.0s bounds this run (slow.py::t); split it to go faster"
    )


def test_short_tests_say_fewer_workers_may_do() -> None:
    tests = [RanTest(f"t.py::t{i}", f"gw{i % 4}", 0.001, "passed") for i in range(100)]
    lines = recorder(tests, 4, 2.0).summary_lines()
    assert "fewer workers (-n) may be as fast" in lines[1]


def test_a_balanced_run_has_no_hint() -> None:
    tests = [RanTest(f"t.py::t{i}", f"gw{i % 2}", 2.0, "passed") for i in range(4)]
    assert len(recorder(tests, 2, 4.1).summary_lines()) == 1
