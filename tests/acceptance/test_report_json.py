"""``--report-json``: the real plugin's file, read as a consumer reads it.

The file must be valid against the committed schema (``jsonschema`` when installed, and
the ``JsonReport`` models in any case), hold every test once in collection order, and
count what pytest's own terminal summary counts.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import parallel_exec
from parallel_exec.reporting.writers.json_report import JsonReport

if TYPE_CHECKING:
    from conftest import PluginRunner

SCHEMA_FILE = Path(parallel_exec.__file__).parent / "schemas" / "report.schema.json"


def load(path: Path) -> dict[str, Any]:
    """Strict UTF-8, JSON, valid against the committed schema and the models."""
    text = path.read_bytes().decode("utf-8")
    data: dict[str, Any] = json.loads(text)
    try:
        import jsonschema  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:  # not in the test extras yet: the models still check the file
        pass
    else:
        schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator(schema).validate(data)
    JsonReport.model_validate_json(text)
    return data


def terminal_counts(data: dict[str, Any]) -> dict[str, int]:
    """What pytest's summary line counts, derived from the report's tests.

    pytest counts reports, not tests: a failing setup or teardown is one ``error`` each,
    beside the call's own word (a passing test whose teardown fails is "1 passed, 1
    error"); collection errors are errors too.  Zero counts are left out, as pytest does.
    """
    counts: Counter[str] = Counter()
    for test in data["tests"]:
        phases, outcome = test["phases"], test["outcome"]
        for when in ("setup", "teardown"):
            if phases[when] is not None and phases[when]["outcome"] == "failed":
                counts["errors"] += 1
        if phases["call"] is not None:
            counts["passed" if outcome == "error" else outcome] += 1
        elif phases["setup"] is not None and phases["setup"]["outcome"] == "skipped":
            counts[outcome] += 1
    counts["errors"] += data["summary"]["collection_errors"]
    counts["deselected"] += data["summary"]["deselected"]
    return {word: count for word, count in counts.items() if count}


def collected_nodeids(runner: PluginRunner, *args: str) -> list[str]:
    """The serial collection order of the same command (``--collect-only -q``)."""
    result = runner.run("--collect-only", "-q", *args)
    return [line for line in result.outlines if "::" in line and " " not in line.split("::")[0]]


@pytest.mark.slow
def test_zoo_report_matches_the_terminal_summary(
    runner: PluginRunner, zoo: tuple[str, ...]
) -> None:
    path = runner.pytester.path / "out" / "report.json"
    result = runner.run(*zoo, "--report-json", str(path), workers=2)
    runner.assert_no_traceback(result)
    data = load(path)

    pytest_counts = {k: v for k, v in result.parseoutcomes().items() if k != "warnings"}
    assert terminal_counts(data) == pytest_counts
    summary = data["summary"]
    outcomes = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
    assert summary["total"] == len(data["tests"]) == sum(summary[o] for o in outcomes)
    assert all(summary[o] > 0 for o in outcomes), summary  # the zoo still has every kind
    assert (data["passed"], data["failed"], data["skipped"]) == (
        summary["passed"],
        summary["failed"],
        summary["skipped"],
    )
    assert (data["exit_code"], data["aborted"]) == (int(result.ret), False)

    nodeids = [t["nodeid"] for t in data["tests"]]
    assert nodeids == collected_nodeids(runner, *zoo)
    # pytest escapes non-ASCII ids by default; the escapes are kept as they are.
    assert "test_zoo_params.py::test_unicode_ids[emoji-\\U0001f642]" in nodeids
    by_id = {t["nodeid"]: t for t in data["tests"]}
    failed = by_id["test_zoo_outcomes.py::test_output_in_failure"]
    assert failed["stdout"] == "stdout line from a failing test\n"
    assert failed["stderr"] == "stderr line from a failing test\n"
    assert failed["crash"]["line"] > failed["location"]["line"] >= 1
    assert "assert (1 + 1) == 3" in failed["longrepr"]
    assert (
        "log line from a failing test"
        in (by_id["test_zoo_outcomes.py::test_logging_in_failure"]["log"])
    )
    assert {t["origin"] for t in data["tests"]} == {"worker"}

    stats = data["workerStats"]
    assert len(stats) == 2
    assert set(stats) == {w["id"] for w in data["workers"]}
    assert sum(s["tests_run"] for s in stats.values()) == summary["total"]
    assert set(stats) == {t["worker"] for t in data["tests"]}
    for worker in data["workers"]:
        mine = [t["duration"] for t in data["tests"] if t["worker"] == worker["id"]]
        assert worker["busy_seconds"] == pytest.approx(sum(mine), abs=1e-4)
        assert worker["pid"] > 0
        assert worker["busy_seconds"] + worker["idle_seconds"] == pytest.approx(
            max(worker["lifetime_seconds"], worker["busy_seconds"]), abs=1e-4
        )
        assert (worker["crashed"], worker["restarts"]) == (False, 0)
    assert 0 < data["duration"] < 120
    outcome = data["learning_outcome"]
    if outcome is not None:
        assert outcome["run_id"] == data["run_id"]


@pytest.mark.slow
def test_crashed_worker_is_reported_with_its_replacement(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(
        test_dies="""
        import os
        import time

        import pytest


        @pytest.mark.parametrize("n", range(4))
        def test_before(n):
            time.sleep(0.05)


        def test_crashes():
            os._exit(3)


        @pytest.mark.parametrize("n", range(4))
        def test_after(n):
            time.sleep(0.05)
        """
    )
    path = runner.pytester.path / "report.json"
    result = runner.run("--report-json", "report.json", workers=1)
    data = load(path)

    assert terminal_counts(data) == result.parseoutcomes() == {"passed": 8, "failed": 1}
    crashed = next(t for t in data["tests"] if t["nodeid"] == "test_dies.py::test_crashes")
    assert (crashed["origin"], crashed["outcome"]) == ("crash", "failed")
    assert data["summary"]["crashed"] == 1
    dead = next(w for w in data["workers"] if w["crashed"])
    assert dead["id"] == crashed["worker"]
    assert dead["crashed_running"] == "test_dies.py::test_crashes"
    assert dead["exit_code"] == 3
    assert dead["restarts"] == 1
    assert data["workerStats"][dead["id"]]["restarts"] == 1
    assert len(data["workers"]) == 2


@pytest.mark.slow
def test_control_characters_and_emoji_survive(runner: PluginRunner) -> None:
    runner.pytester.makeini(
        """
        [pytest]
        disable_test_id_escaping_and_forfeit_all_rights_to_community_support = true
        """
    )
    runner.pytester.makepyfile(
        test_odd=r"""
        import sys

        import pytest


        @pytest.mark.parametrize("label", ["emoji-\U0001f642", "esc-\x1b[31m-bs-\x08"])
        def test_odd(label):
            print("out", label, "nul \x00 red \x1b[31m \U0001f642")
            sys.stderr.write("err \x00\n")
            assert label.startswith("emoji")
        """
    )
    path = runner.pytester.path / "report.json"
    result = runner.run("--report-json", "report.json", workers=2)
    data = load(path)

    assert terminal_counts(data) == result.parseoutcomes() == {"passed": 1, "failed": 1}
    emoji, esc = data["tests"]
    assert emoji["nodeid"] == "test_odd.py::test_odd[emoji-\U0001f642]"
    assert esc["nodeid"] == "test_odd.py::test_odd[esc-\x1b[31m-bs-\x08]"
    assert esc["stdout"] == "out esc-\x1b[31m-bs-\x08 nul \x00 red \x1b[31m \U0001f642\n"
    assert esc["stderr"] == "err \x00\n"
    assert (emoji["outcome"], esc["outcome"]) == ("passed", "failed")
