"""The timeline: one self-contained HTML picture of a run, from its JSON report.

``timeline_data`` turns a report (``--report-json``'s document, a shard's or a merged
one) into compact plain data: a lane per worker (grouped by shard in a merged report),
a bar per test attempt at its real start and end with its outcome, retries, crashes,
stragglers and tests run away from their planned worker marked, each worker's start-up
and collection as a segment, the scheduler's plan as predicted bars, and the run's
figures.  ``render_html`` puts that data and a small canvas drawing script into one
file (no network: styles and script inline), usable for 50,000 tests.

``--report-timeline PATH`` writes it at the end of a run (from the JSON report writer's
record, ``writers/json_report.py``);
``parallel-exec timeline REPORT.json -o PATH`` draws it later from a JSON report.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from ..files import write_atomically

#: Bar flags (a bit mask).
RETRIED = 1  # an earlier attempt, run again
CRASHED = 2  # its worker died running it
STRAGGLER = 4  # ran far longer than predicted
MOVED = 8  # ran on another worker than the plan said (stolen / handed on)

OUTCOME_CODES = {
    "passed": "p",
    "failed": "f",
    "error": "e",
    "skipped": "s",
    "xfailed": "x",
    "xpassed": "X",
}
#: A test is a straggler when it ran this many times its prediction (and one second).
STRAGGLER_FACTOR = 3.0

_SHARD_PREFIX = re.compile(r"^(\d+/\d+):(.+)$")


def _round(value: float) -> float:
    return round(float(value), 4)


def _figures(report: Mapping[str, Any]) -> list[list[str]]:
    outcome = report.get("learning_outcome") or {}
    summary = report.get("summary") or {}
    figures = [["tests", str(summary.get("total", len(report.get("tests", []))))]]
    for key in ("passed", "failed", "error", "skipped"):
        if summary.get(key):
            figures.append([key, str(summary[key])])
    wall = outcome.get("wall_time", report.get("duration"))
    if wall is not None:
        figures.append(["wall", f"{wall:.2f} s"])
    if outcome:
        figures += [
            ["speedup", f"{outcome['speedup']:.2f}x"],
            ["efficiency", f"{outcome['efficiency']:.0%}"],
            ["balance", f"{outcome['balance']:.0%}"],
            ["lower bound", f"{outcome['lower_bound']:.2f} s"],
            [
                "makespan predicted / actual",
                (
                    f"{outcome['predicted_makespan']:.2f} s / "
                    if outcome.get("predicted_makespan") is not None
                    else "- / "
                )
                + f"{outcome['actual_makespan']:.2f} s",
            ],
            ["reward", f"{outcome['reward']:.2f}"],
        ]
    return figures


def timeline_data(report: Mapping[str, Any]) -> dict[str, Any]:
    """The picture's data (see the module's docstring); plain JSON-able values."""
    lanes: list[str] = []
    lane_of: dict[str, int] = {}

    def lane(worker: str) -> int:
        if worker not in lane_of:
            lane_of[worker] = len(lanes)
            lanes.append(worker)
        return lane_of[worker]

    segments: list[list[Any]] = []
    for worker in report.get("workers", []):
        number = lane(worker["id"])
        start = worker.get("started_at")
        ready = worker.get("ready_at")
        if start is not None:
            end = ready if ready is not None else worker.get("ended_at")
            if end is not None and end > start:
                segments.append([number, _round(start), _round(end - start), "startup"])
        if worker.get("crashed") and worker.get("ended_at") is not None:
            segments.append([number, _round(worker["ended_at"]), 0, "crash"])

    stragglers = {
        s["nodeid"] for s in (report.get("learning_outcome") or {}).get("straggler_tests", [])
    }
    ids: list[str] = []
    bars: list[list[Any]] = []
    index_of: dict[str, int] = {}
    ran_on: dict[str, int] = {}
    final_bar: dict[str, list[Any]] = {}
    for test in report.get("tests", []):
        number = index_of.setdefault(test["nodeid"], len(ids))
        if number == len(ids):
            ids.append(test["nodeid"])
        predicted = test.get("predicted")
        for attempt in test.get("attempts", {}).get("earlier", []):
            if attempt.get("started") is None:
                continue
            bars.append(
                [
                    lane(attempt["worker"]),
                    _round(attempt["started"]),
                    _round(attempt["duration"]),
                    OUTCOME_CODES.get(attempt["outcome"], "f"),
                    predicted,
                    number,
                    RETRIED,
                ]
            )
        if test.get("started") is None or not test.get("worker"):
            continue  # never ran
        flags = CRASHED if test.get("origin") == "crash" else 0
        duration = float(test.get("duration", 0.0))
        if test["nodeid"] in stragglers or (
            predicted is not None and duration > max(1.0, STRAGGLER_FACTOR * predicted)
        ):
            flags |= STRAGGLER
        ran_on[test["nodeid"]] = lane(test["worker"])
        final_bar[test["nodeid"]] = [
            lane(test["worker"]),
            _round(test["started"]),
            _round(duration),
            OUTCOME_CODES.get(test.get("outcome", ""), "f"),
            predicted,
            number,
            flags,
        ]
        bars.append(final_bar[test["nodeid"]])

    plan_bars: list[list[Any]] = []
    plan = report.get("plan") or []
    typical = [t.get("predicted") for t in report.get("tests", []) if t.get("predicted")]
    guess = sum(typical) / len(typical) if typical else 0.0
    predicted_of = {t["nodeid"]: t.get("predicted") for t in report.get("tests", [])}
    for slot, tests in enumerate(plan):
        clock = 0.0
        for nodeid in tests:
            number = index_of.setdefault(nodeid, len(ids))
            if number == len(ids):
                ids.append(nodeid)
            seconds = predicted_of.get(nodeid) or guess
            plan_bars.append([slot, _round(clock), _round(seconds), number])
            clock += seconds
    pairs = Counter(
        (slot, ran_on[n]) for slot, tests in enumerate(plan) for n in tests if n in ran_on
    )
    slot_lane = match_slots(len(plan), len(lanes), pairs)
    for slot, tests in enumerate(plan):
        for nodeid in tests:
            if slot in slot_lane and nodeid in ran_on and ran_on[nodeid] != slot_lane[slot]:
                final_bar[nodeid][6] |= MOVED

    groups: list[dict[str, Any]] = []
    for number, name in enumerate(lanes):
        found = _SHARD_PREFIX.match(name)
        group = found.group(1) if found else ""
        if not groups or groups[-1]["name"] != group:
            groups.append({"name": group, "lanes": []})
        groups[-1]["lanes"].append(number)
    span = max([b[1] + b[2] for b in bars] + [s[1] + s[2] for s in segments] + [0.0])
    plan_span = max([b[1] + b[2] for b in plan_bars] + [0.0])
    shard = report.get("shard") or {}
    return {
        "title": f"parallel_exec run {report.get('run_id') or ''}".strip(),
        "shard": shard.get("shard", ""),
        "figures": _figures(report),
        "lanes": lanes,
        "groups": groups,
        "ids": ids,
        "bars": bars,
        "segments": segments,
        "plan": plan_bars,
        "planLanes": [
            lanes[slot_lane[s]] if s in slot_lane else f"slot {s + 1}" for s in range(len(plan))
        ],
        "span": _round(max(span, plan_span)),
    }


def match_slots(slots: int, lanes: int, ran: Mapping[tuple[int, int], int]) -> dict[int, int]:
    """The worker (lane) that took each planned slot, each lane and each slot at most
    once, so that as many tests as possible ran where they were planned: ``ran`` counts
    the tests of a slot that ran in a lane.  The pairs that ran most first, then every
    slot left to a lane left, then swaps of two slots' lanes while a swap gains (a slot
    whose tests a busy worker took does not lose its own worker to it).  A slot none of
    whose tests ran in its lane is left out (shown as ``slot N``)."""
    slot_lane: dict[int, int] = {}
    for (slot, lane_number), _ in sorted(ran.items(), key=lambda p: (-p[1], p[0])):
        if slot not in slot_lane and lane_number not in slot_lane.values():
            slot_lane[slot] = lane_number
    free = [n for n in range(lanes) if n not in slot_lane.values()]
    for slot in range(slots):
        if slot not in slot_lane and free:
            best = max(free, key=lambda n: (ran.get((slot, n), 0), -n))
            slot_lane[slot] = best
            free.remove(best)
    improved = True
    while improved:
        improved = False
        for a in slot_lane:
            for b in slot_lane:
                la, lb = slot_lane[a], slot_lane[b]
                gain = ran.get((a, lb), 0) + ran.get((b, la), 0)
                if a < b and gain > ran.get((a, la), 0) + ran.get((b, lb), 0):
                    slot_lane[a], slot_lane[b] = lb, la
                    improved = True
    return {slot: n for slot, n in slot_lane.items() if ran.get((slot, n), 0)}


def render_html(report: Mapping[str, Any]) -> str:
    """The whole HTML file for a report."""
    data = timeline_data(report)
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=True).replace("</", "<\\/")
    title = html.escape(data["title"] + (f" (shard {data['shard']})" if data["shard"] else ""))
    figures = "".join(
        f"<div class='figure'><span>{html.escape(k)}</span><b>{html.escape(v)}</b></div>"
        for k, v in data["figures"]
    )
    lanes = "".join(f"<li>{html.escape(name)}</li>" for name in data["lanes"])
    template = resources.files(__package__).joinpath("timeline.html").read_text(encoding="utf-8")
    return (
        template.replace("@TITLE@", title)
        .replace("@FIGURES@", figures)
        .replace("@LANES@", lanes)
        .replace("@DATA@", payload)
    )


def write_timeline(path: Path, report: Mapping[str, Any]) -> None:
    write_atomically(path, render_html(report))
