"""The learning-outcome record: the reward table, stragglers and the run's figures.

All of it is computed from plain data (``RanTest`` rows, a wall time, a worker count),
so every figure is checked here against a hand computation, without a run.  The record
is shown to users, stored in the history and written by ``--report-outcome``: a wrong
figure there misleads whoever tunes a suite by it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from parallel_exec.history.learning import (
    STRAGGLER_K,
    STRAGGLER_MIN_EXCESS,
    LearningOutcome,
    RanTest,
    Straggler,
    find_stragglers,
    grade,
    summarize,
)

# ---------------------------------------------------------------------------- grade


def graded(
    *,
    all_complete: bool = True,
    all_passed: bool = True,
    efficiency: float = 0.99,
    stragglers: int = 0,
    retries: int = 0,
    execution_failed: bool = False,
) -> float:
    """``grade`` of the best possible run, with the given figures changed."""
    return grade(
        all_complete=all_complete,
        all_passed=all_passed,
        efficiency=efficiency,
        stragglers=stragglers,
        retries=retries,
        execution_failed=execution_failed,
    )


def test_row_1_0_all_pass_above_95_percent_no_stragglers() -> None:
    assert graded() == 1.0
    assert graded(efficiency=0.9500001) == 1.0
    assert graded(efficiency=1.0) == 1.0


@pytest.mark.parametrize(
    "change",
    [
        {"efficiency": 0.95},  # exactly 95 % is not above it
        {"efficiency": 0.9},
        {"efficiency": 0.8500001},
        {"stragglers": 1},
        {"stragglers": 7},
        {"all_passed": False},
        {"all_passed": False, "stragglers": 2, "efficiency": 0.99},
    ],
    ids=str,
)
def test_row_0_9_complete_above_85_percent(change: dict[str, Any]) -> None:
    assert graded(**change) == 0.9


@pytest.mark.parametrize(
    "change",
    [
        {"efficiency": 0.85},  # exactly 85 % is not above it
        {"efficiency": 0.8},
        {"efficiency": 0.7000001},
        {"efficiency": 0.75, "all_passed": False, "stragglers": 3},
    ],
    ids=str,
)
def test_row_0_7_complete_above_70_percent(change: dict[str, Any]) -> None:
    assert graded(**change) == 0.7


@pytest.mark.parametrize(
    "change",
    [
        {"efficiency": 0.70},  # exactly 70 % is not above it: the note under the table
        {"efficiency": 0.3},
        {"efficiency": 0.0},
        {"efficiency": 0.1, "all_passed": False},
    ],
    ids=str,
)
def test_complete_without_retries_at_or_below_70_percent_is_0_5(change: dict[str, Any]) -> None:
    assert graded(**change) == 0.5


@pytest.mark.parametrize("efficiency", [0.99, 0.9, 0.8, 0.5])
@pytest.mark.parametrize("retries", [1, 5])
def test_row_0_5_complete_with_retries(efficiency: float, retries: int) -> None:
    """Retries cap a complete run at 0.5, whatever its efficiency.

    Retries are checked before the efficiency rows (see ``grade``'s docstring and
    docs/learning.md): the rows above 0.5 describe runs that completed without help.
    """
    assert graded(retries=retries, efficiency=efficiency) == 0.5


@pytest.mark.parametrize(
    "change",
    [
        {"all_complete": False},
        {"all_complete": False, "efficiency": 0.99, "all_passed": True},
        {"all_complete": False, "retries": 2},
        {"all_complete": False, "all_passed": False, "efficiency": 0.1},
    ],
    ids=str,
)
def test_row_0_3_incomplete(change: dict[str, Any]) -> None:
    assert graded(**change) == 0.3


@pytest.mark.parametrize(
    "change",
    [
        {"execution_failed": True},
        {"execution_failed": True, "all_complete": False},
        {"execution_failed": True, "retries": 1},
        {"execution_failed": True, "all_complete": False, "all_passed": False},
    ],
    ids=str,
)
def test_row_0_0_execution_failed(change: dict[str, Any]) -> None:
    assert graded(**change) == 0.0


# ---------------------------------------------------------------------------- stragglers


def ran(nodeid: str, duration: float, worker: str = "gw0", outcome: str = "passed") -> RanTest:
    return RanTest(nodeid, worker, duration, outcome)


def test_straggler_constants_are_the_documented_ones() -> None:
    # mean + 3 standard deviations, and at least half a second (docs/options.md).
    assert (STRAGGLER_K, STRAGGLER_MIN_EXCESS) == (3.0, 0.5)


@pytest.mark.parametrize(
    ("mean", "stdev", "duration", "straggles"),
    [
        # Wide history: mean + 3 * stdev = 4.0 is the bar, strictly above it.
        (1.0, 1.0, 4.0, False),
        (1.0, 1.0, 4.01, True),
        # Narrow history: the minimum excess of 0.5 s is the bar, reached (>=) counts.
        (1.0, 0.1, 1.49, False),
        (1.0, 0.1, 1.5, True),
        (1.0, 0.0, 1.5, True),
        # Fast tests: tripled in time, but by less than 0.5 s, is noise.
        (0.01, 0.001, 0.4, False),
        (0.01, 0.0, 0.51, True),
        # Faster than predicted never straggles.
        (2.0, 0.5, 0.1, False),
    ],
)
def test_find_stragglers_thresholds(
    mean: float, stdev: float, duration: float, straggles: bool
) -> None:
    found = find_stragglers([ran("t.py::x", duration, "gw3")], {"t.py::x": (mean, stdev)})
    expected = [Straggler(nodeid="t.py::x", worker="gw3", predicted=mean, actual=duration)]
    assert found == (expected if straggles else [])


def test_only_tests_with_history_straggle() -> None:
    tests = [ran("t.py::known", 10.0), ran("t.py::new", 100.0)]
    assert [s.nodeid for s in find_stragglers(tests, {"t.py::known": (1.0, 0.0)})] == [
        "t.py::known"
    ]
    assert find_stragglers(tests, {}) == []


def test_straggler_figures_are_rounded_to_microseconds() -> None:
    (found,) = find_stragglers([ran("t.py::x", 2.123456789)], {"t.py::x": (1.0000004, 0.0)})
    assert (found.predicted, found.actual) == (1.0, 2.123457)


# ---------------------------------------------------------------------------- summarize


def summary(
    tests: Sequence[RanTest],
    *,
    workers: int = 2,
    wall: float = 5.0,
    not_run: int = 0,
    execution_failed: bool = False,
    predictions: Mapping[str, tuple[float, float]] | None = None,
    retries: int = 0,
) -> LearningOutcome:
    return summarize(
        version="9.9",
        run_id="run-1",
        strategy="time",
        workers=workers,
        tests=tests,
        wall_time=wall,
        not_run=not_run,
        worker_failures=0,
        execution_failed=execution_failed,
        predictions=predictions,
        predicted_makespan=4.5,
        retries=retries,
    )


#: gw0 is busy 3 + 1 = 4 s, gw1 2 s: 6 s of work.
TWO_WORKERS = [
    ran("a.py::t1", 3.0, "gw0"),
    ran("a.py::t2", 1.0, "gw0"),
    ran("b.py::t3", 2.0, "gw1"),
]


def test_summary_figures_by_hand() -> None:
    outcome = summary(TWO_WORKERS, workers=2, wall=5.0)
    assert outcome.sequential_estimate == 6.0
    assert outcome.wall_time == 5.0
    assert outcome.actual_makespan == 5.0
    assert outcome.speedup == 1.2  # 6 / 5
    assert outcome.efficiency == 0.6  # 6 / (2 * 5)
    assert outcome.balance == 0.75  # mean busy 3 / largest busy 4
    assert outcome.lower_bound == 3.0  # max(6 / 2, 3)
    assert outcome.actual_over_lower_bound == pytest.approx(5 / 3, abs=1e-4)
    assert outcome.predicted_makespan == 4.5
    assert outcome.workers == 2
    assert outcome.tests_executed == 3
    assert (outcome.version, outcome.run_id, outcome.strategy) == ("9.9", "run-1", "time")


def test_lower_bound_is_total_over_workers_when_no_test_dominates() -> None:
    tests = [ran(f"a.py::t{i}", 1.0, f"gw{i % 2}") for i in range(8)]
    outcome = summary(tests, workers=2, wall=4.0)
    assert outcome.lower_bound == 4.0  # max(8 / 2, 1)
    assert outcome.actual_over_lower_bound == 1.0
    assert outcome.efficiency == 1.0
    assert outcome.balance == 1.0


def test_idle_workers_lower_efficiency_but_not_balance() -> None:
    """Balance is over the workers that ran tests; efficiency counts every worker."""
    outcome = summary(TWO_WORKERS, workers=3, wall=5.0)
    assert outcome.efficiency == 0.4  # 6 / (3 * 5)
    assert outcome.balance == 0.75
    assert outcome.lower_bound == 3.0  # max(6 / 3, 3): the longest test
    assert outcome.actual_over_lower_bound == pytest.approx(5 / 3, abs=1e-4)


def test_efficiency_is_capped_at_one() -> None:
    # Durations measured in workers can add up to a little more than workers x wall.
    outcome = summary([ran("a.py::t", 5.2, "gw0"), ran("a.py::u", 5.1, "gw1")], wall=5.0)
    assert outcome.efficiency == 1.0


def test_counts_fold_xfail_and_xpass_and_errors() -> None:
    outcomes = ["passed", "passed", "failed", "skipped", "xfailed", "xpassed", "error", "error"]
    tests = [ran(f"a.py::t{i}", 0.1, "gw0", outcome) for i, outcome in enumerate(outcomes)]
    outcome = summary(tests, not_run=3)
    assert (outcome.passed, outcome.failed, outcome.skipped, outcome.errors) == (3, 1, 2, 2)
    assert outcome.tests_executed == 8
    assert outcome.passed + outcome.failed + outcome.skipped + outcome.errors == 8
    assert outcome.not_run == 3


def test_an_unknown_outcome_word_counts_as_failed() -> None:
    outcome = summary([ran("a.py::t", 0.1, outcome="rerun")])
    assert (outcome.passed, outcome.failed, outcome.skipped, outcome.errors) == (0, 1, 0, 0)


def test_no_tests_at_all() -> None:
    outcome = summary([], workers=4, wall=2.0, not_run=5)
    assert outcome.tests_executed == 0
    assert outcome.efficiency == 0.0
    assert outcome.balance == 1.0
    assert outcome.speedup == 0.0
    assert outcome.lower_bound == 0.0
    assert outcome.actual_over_lower_bound is None
    assert outcome.reward == 0.3


def test_zero_workers_count_as_one() -> None:
    outcome = summary(TWO_WORKERS, workers=0, wall=6.0)
    assert outcome.workers == 1
    assert outcome.efficiency == 1.0  # 6 / (1 * 6)
    assert outcome.lower_bound == 6.0


@pytest.mark.parametrize(
    ("tests", "kwargs", "reward"),
    [
        # 19 s of work on 2 workers in 10 s: exactly 95 %, not above it.
        ([ran("a.py::t", 9.5, "gw0"), ran("a.py::u", 9.5, "gw1")], {"wall": 10.0}, 0.9),
        ([ran("a.py::t", 9.6, "gw0"), ran("a.py::u", 9.6, "gw1")], {"wall": 10.0}, 1.0),
        ([ran("a.py::t", 9.6, "gw0"), ran("a.py::u", 9.6, "gw1", "failed")], {"wall": 10.0}, 0.9),
        ([ran("a.py::t", 9.6, "gw0"), ran("a.py::u", 9.6, "gw1", "error")], {"wall": 10.0}, 0.9),
        (
            [ran("a.py::t", 9.6, "gw0"), ran("a.py::u", 9.6, "gw1")],
            {"wall": 10.0, "not_run": 1},
            0.3,
        ),
        (
            [ran("a.py::t", 9.6, "gw0"), ran("a.py::u", 9.6, "gw1")],
            {"wall": 10.0, "execution_failed": True},
            0.0,
        ),
        (
            [ran("a.py::t", 9.6, "gw0"), ran("a.py::u", 9.6, "gw1")],
            {"wall": 10.0, "retries": 1},
            0.5,
        ),
        # Skipped and xfailed tests are not failures.
        (
            [ran("a.py::t", 9.6, "gw0", "skipped"), ran("a.py::u", 9.6, "gw1", "xfailed")],
            {"wall": 10.0},
            1.0,
        ),
        # One straggler (history 1 s, took 9.6 s) costs the top grade.
        (
            [ran("a.py::t", 9.6, "gw0"), ran("a.py::u", 9.6, "gw1")],
            {"wall": 10.0, "predictions": {"a.py::t": (1.0, 0.1)}},
            0.9,
        ),
    ],
)
def test_summary_reward(tests: list[RanTest], kwargs: dict[str, Any], reward: float) -> None:
    assert summary(tests, **kwargs).reward == reward


def test_summary_lists_stragglers() -> None:
    tests = [ran("a.py::slow", 5.0, "gw1"), ran("a.py::fine", 1.0, "gw0")]
    outcome = summary(tests, predictions={"a.py::slow": (1.0, 0.2), "a.py::fine": (1.0, 0.2)})
    assert outcome.stragglers == 1
    assert outcome.straggler_tests == [
        Straggler(nodeid="a.py::slow", worker="gw1", predicted=1.0, actual=5.0)
    ]


def test_outcome_json_round_trip() -> None:
    outcome = summary(TWO_WORKERS, predictions={"a.py::t1": (0.1, 0.0)})
    data = json.loads(outcome.model_dump_json())
    assert LearningOutcome.model_validate(data) == outcome
    assert data["straggler_tests"][0]["nodeid"] == "a.py::t1"


# ---------------------------------------------------------------------------- JSON schema

#: Keywords of JSON Schema (draft 2020-12) that a schema of this record may use.
SCHEMA_KEYWORDS = frozenset(
    {
        "$defs",
        "$ref",
        "additionalProperties",
        "anyOf",
        "default",
        "description",
        "exclusiveMaximum",
        "exclusiveMinimum",
        "items",
        "maximum",
        "minimum",
        "properties",
        "required",
        "title",
        "type",
    }
)
TYPE_NAMES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})


def check_schema(node: Any, root: Mapping[str, Any], where: str = "#") -> None:
    """Fail unless ``node`` is well-formed JSON Schema: known keywords, valid types and
    ``$ref``s that resolve, ``required`` names that are properties."""
    assert isinstance(node, dict), f"{where}: a schema must be an object"
    unknown = set(node) - SCHEMA_KEYWORDS
    assert not unknown, f"{where}: unknown keywords {sorted(unknown)}"
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        assert set(types) <= TYPE_NAMES, f"{where}: bad type {node['type']!r}"
    if "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/$defs/"), f"{where}: unexpected $ref {ref}"
        assert ref.removeprefix("#/$defs/") in root.get("$defs", {}), f"{where}: {ref} dangles"
    for name, sub in node.get("properties", {}).items():
        check_schema(sub, root, f"{where}/properties/{name}")
    assert set(node.get("required", [])) <= set(node.get("properties", {})), where
    for index, sub in enumerate(node.get("anyOf", [])):
        check_schema(sub, root, f"{where}/anyOf/{index}")
    if isinstance(node.get("items"), dict):
        check_schema(node["items"], root, f"{where}/items")
    for name, sub in node.get("$defs", {}).items():
        check_schema(sub, root, f"#/$defs/{name}")


def conforms(value: Any, node: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    """Whether ``value`` is valid under ``node`` (the keywords listed above)."""
    if "$ref" in node:
        return conforms(value, root["$defs"][node["$ref"].removeprefix("#/$defs/")], root)
    if "anyOf" in node:
        return any(conforms(value, sub, root) for sub in node["anyOf"])
    kind = node.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    if kind is not None and not checks[kind](value):
        return False
    if "minimum" in node and value < node["minimum"]:
        return False
    if "maximum" in node and value > node["maximum"]:
        return False
    if isinstance(value, dict):
        if not set(node.get("required", [])) <= set(value):
            return False
        properties = node.get("properties", {})
        return all(conforms(v, properties[k], root) for k, v in value.items() if k in properties)
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return all(conforms(v, node["items"], root) for v in value)
    return True


def test_outcome_schema_is_a_valid_json_schema() -> None:
    schema = LearningOutcome.model_json_schema()
    json.loads(json.dumps(schema))  # plain JSON
    assert schema["type"] == "object"
    check_schema(schema, schema)
    assert {"speedup", "efficiency", "balance", "stragglers", "reward"} <= set(schema["required"])


def test_outcome_schema_bounds_the_graded_figures() -> None:
    properties = LearningOutcome.model_json_schema()["properties"]
    for name in ("efficiency", "balance", "reward"):
        assert (properties[name]["minimum"], properties[name]["maximum"]) == (0.0, 1.0), name


def test_a_real_outcome_conforms_to_the_schema() -> None:
    schema = LearningOutcome.model_json_schema()
    outcome = summary(TWO_WORKERS, predictions={"a.py::t1": (0.1, 0.0)})
    assert conforms(outcome.model_dump(mode="json"), schema, schema)
    broken = outcome.model_dump(mode="json") | {"efficiency": 1.5}
    assert not conforms(broken, schema, schema)
    missing = {k: v for k, v in outcome.model_dump(mode="json").items() if k != "reward"}
    assert not conforms(missing, schema, schema)
