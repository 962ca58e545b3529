"""The timeline's data on plain reports: every test once as a final bar, within its
worker's lane and the run's span; retries, crashes, stragglers and tests run away from
their planned worker marked; start-up segments; a lane group per shard of a merged
report; and the HTML file holds everything it needs (no network)."""

from __future__ import annotations

import json
import re
from typing import Any

from parallel_exec.reporting.timeline import (
    CRASHED,
    MOVED,
    RETRIED,
    STRAGGLER,
    match_slots,
    render_html,
    timeline_data,
)


def record_of(
    nodeid: str, worker: str, started: float, duration: float, **extra: Any
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "nodeid": nodeid,
        "outcome": "passed",
        "origin": "worker",
        "worker": worker,
        "started": started,
        "duration": duration,
        "predicted": None,
        "attempts": {"count": 1, "earlier": []},
    }
    record.update(extra)
    return record


def report() -> dict[str, Any]:
    return {
        "run_id": "r1",
        "duration": 6.0,
        "summary": {"total": 5, "passed": 3, "failed": 2},
        "workers": [
            {"id": "gw0", "started_at": 0.0, "ready_at": 0.5, "ended_at": 6.0, "crashed": False},
            {"id": "gw1", "started_at": 0.1, "ready_at": 0.6, "ended_at": 3.0, "crashed": True},
        ],
        "tests": [
            record_of("t.py::a", "gw0", 0.5, 1.0, predicted=1.0),
            record_of("t.py::b", "gw1", 0.6, 2.4, outcome="failed", origin="crash"),
            record_of(
                "t.py::c",
                "gw0",
                3.0,
                1.0,
                attempts={
                    "count": 2,
                    "earlier": [
                        {"outcome": "failed", "worker": "gw1", "duration": 0.2, "started": 0.4}
                    ],
                },
            ),
            record_of("t.py::d", "gw0", 1.5, 1.5, predicted=0.2),  # a straggler
            record_of("t.py::never", None, None, 0.0, outcome="error", origin="not-run"),
        ],
        "plan": [["t.py::a", "t.py::d", "t.py::c"], ["t.py::b", "t.py::never"]],
        "learning_outcome": None,
    }


def test_every_test_that_ran_is_one_final_bar_in_its_lane_and_the_span() -> None:
    data = timeline_data(report())
    assert data["lanes"] == ["gw0", "gw1"]
    final = [b for b in data["bars"] if not b[6] & RETRIED]
    names = [data["ids"][b[5]] for b in final]
    assert sorted(names) == ["t.py::a", "t.py::b", "t.py::c", "t.py::d"]  # not the not-run one
    for lane, start, duration, *_ in data["bars"]:
        assert 0 <= lane < len(data["lanes"])
        assert start >= 0
        assert start + duration <= data["span"]
    flags = {data["ids"][b[5]]: b[6] for b in final}
    assert flags["t.py::b"] & CRASHED
    assert flags["t.py::d"] & STRAGGLER
    assert not flags["t.py::a"] & (STRAGGLER | MOVED | CRASHED)
    (retried,) = [b for b in data["bars"] if b[6] & RETRIED]
    assert (data["lanes"][retried[0]], data["ids"][retried[5]], retried[3]) == (
        "gw1",
        "t.py::c",
        "f",
    )
    assert [s[3] for s in data["segments"]] == ["startup", "startup", "crash"]


def test_the_plan_is_laid_out_with_predictions_and_moved_tests_are_marked() -> None:
    moved = report()
    moved["plan"] = [["t.py::a", "t.py::d", "t.py::b"], ["t.py::c"]]
    data = timeline_data(moved)
    planned = {data["ids"][b[3]]: (b[0], b[1], b[2]) for b in data["plan"]}
    # Unknown predictions count as the mean of the known ones ((1.0 + 0.2) / 2).
    assert planned["t.py::a"] == (0, 0.0, 1.0)
    assert planned["t.py::d"] == (0, 1.0, 0.2)
    assert planned["t.py::b"] == (0, 1.2, 0.6)
    assert data["planLanes"] == ["gw0", "slot 2"]  # each worker takes one slot
    final = {data["ids"][b[5]]: b[6] for b in data["bars"] if not b[6] & RETRIED}
    assert final["t.py::b"] & MOVED  # planned with a and d on gw0, ran on gw1
    assert not final["t.py::a"] & MOVED


def test_each_planned_slot_is_named_after_the_worker_that_ran_it() -> None:
    """A worker that ran its own slot and most of another's keeps its own slot: the
    other's worker is named too (seen in the demo suite: 4 slots, gw1 took 12 tests of
    slot 2 besides its own 7, and slot 1 was shown as ``slot 2``)."""
    ran = {(0, 0): 6, (1, 1): 7, (2, 1): 12, (2, 2): 7, (2, 3): 1, (3, 3): 5, (3, 0): 1}
    assert match_slots(4, 4, ran) == {0: 0, 1: 1, 2: 2, 3: 3}
    # More slots than workers that ran them: a slot without any of its tests in a
    # lane left keeps no worker's name.
    assert match_slots(3, 2, {(0, 0): 5, (1, 0): 6, (2, 1): 1}) == {1: 0, 2: 1}
    assert match_slots(2, 3, {}) == {}


def test_a_merged_report_has_a_lane_group_per_shard() -> None:
    merged = report()
    for worker in merged["workers"]:
        worker["id"] = "1/2:" + worker["id"]
    merged["workers"].append({"id": "2/2:gw0", "started_at": 0.0})
    for test in merged["tests"]:
        if test["worker"]:
            test["worker"] = "1/2:" + test["worker"]
        for attempt in test["attempts"]["earlier"]:
            attempt["worker"] = "1/2:" + attempt["worker"]
    merged["tests"][0]["worker"] = "2/2:gw0"
    data = timeline_data(merged)
    assert [(g["name"], [data["lanes"][i] for i in g["lanes"]]) for g in data["groups"]] == [
        ("1/2", ["1/2:gw0", "1/2:gw1"]),
        ("2/2", ["2/2:gw0"]),
    ]


def test_the_file_is_self_contained_and_holds_the_data() -> None:
    page = render_html(report())
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@" + "DATA@" not in page
    payload = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)
    assert payload is not None
    assert json.loads(payload.group(1)) == timeline_data(report())
    assert "<li>gw0</li><li>gw1</li>" in page
    hostile = report()
    hostile["tests"][0]["nodeid"] = "t.py::a[</script><b>]"
    assert "</script><b>" not in render_html(hostile)
