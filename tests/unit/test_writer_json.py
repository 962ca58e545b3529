"""``JsonWriter`` fed run events on plain data; its file read back by real consumers.

Reports come from two sources: a real in-process pytest run of a small module (every
outcome, with real tracebacks, captured output and logs), and ``pytest.TestReport``
objects built as the controller builds them for crashed and never-run tests.  Every file
the writer produces is parsed with ``json``, validated against the committed schema
(with ``jsonschema`` when it is installed) and read back into ``JsonReport``.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import textwrap
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inline_reports import report

import parallel_exec
from parallel_exec._version import __version__
from parallel_exec.controller.crashes import closing_report, crash_report
from parallel_exec.history.learning import RanTest, summarize
from parallel_exec.reporting import events
from parallel_exec.reporting.writers import json_report
from parallel_exec.reporting.writers.json_report import TEXT_CAP, JsonReport, JsonWriter

SCHEMA_FILE = Path(parallel_exec.__file__).parent / "schemas" / "report.schema.json"
REGENERATE = "parallel-exec schema report > src/parallel_exec/schemas/report.schema.json"

MODULE = """
    import logging
    import sys

    import pytest


    @pytest.fixture
    def broken():
        raise ValueError("setup exploded")


    @pytest.fixture
    def bad_teardown():
        yield
        raise RuntimeError("teardown exploded")


    def test_passes():
        print("out \\x1b[31mred\\x1b[0m \\U0001f642 \\x00 \\x08")
        print("err line", file=sys.stderr)
        logging.getLogger("zoo").warning("a log line")


    def test_fails():
        value = 1
        assert value == 2


    def test_error(broken):
        pass


    def test_skipped():
        pytest.skip("not today")


    @pytest.mark.xfail(reason="known")
    def test_xfailed():
        assert 0


    @pytest.mark.xfail(reason="fixed")
    def test_xpassed():
        pass


    def test_teardown_error(bad_teardown):
        pass
"""
#: 1-based line of ``assert value == 2`` in MODULE as pytester writes it (dedented, without
#: the leading blank line).
ASSERT_LINE = textwrap.dedent(MODULE).lstrip("\n").splitlines().index("    assert value == 2") + 1

EXPECTED = {
    "test_mod.py::test_passes": "passed",
    "test_mod.py::test_fails": "failed",
    "test_mod.py::test_error": "error",
    "test_mod.py::test_skipped": "skipped",
    "test_mod.py::test_xfailed": "xfailed",
    "test_mod.py::test_xpassed": "xpassed",
    "test_mod.py::test_teardown_error": "error",
}


# --------------------------------------------------------------------------- helpers


def validate(data: dict[str, Any]) -> None:
    """Validate with a real JSON Schema validator if there is one, and with the models."""
    try:
        import jsonschema  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:  # not in the test extras yet: the models still check the file
        pass
    else:
        schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.Draft202012Validator(schema).validate(data)
    JsonReport.model_validate(data)


def load(path: Path) -> dict[str, Any]:
    """The file as a consumer reads it: strict UTF-8, JSON, valid against the schema."""
    text = path.read_bytes().decode("utf-8")
    data: dict[str, Any] = json.loads(text)
    validate(data)
    JsonReport.model_validate_json(text)
    return data


def feed(writer: JsonWriter, stream: Iterable[events.RunEvent]) -> None:
    for event in stream:
        writer(event)


def finished(
    reports: Iterable[pytest.TestReport],
    worker: str = "gw0",
    origin: str = "worker",
    attempts: tuple[events.Attempt, ...] = (),
) -> events.TestFinished:
    reports = tuple(reports)
    first = reports[0]
    return events.TestFinished(
        worker_id=worker,
        nodeid=first.nodeid,
        location=first.location,
        reports=reports,
        origin=origin,
        attempts=attempts,
    )


def collection(
    nodeids: Iterable[str],
    collect_reports: tuple[pytest.CollectReport, ...] = (),
    deselected: tuple[str, ...] = (),
) -> events.CollectionFinished:
    return events.CollectionFinished(
        worker_id="gw0",
        nodeids=tuple(nodeids),
        collect_reports=collect_reports,
        deselected=deselected,
        warnings=(),
    )


def passing(nodeid: str, duration: float = 0.1) -> tuple[pytest.TestReport, ...]:
    return (
        report(nodeid, "setup", "passed", 0.0),
        report(nodeid, "call", "passed", duration),
        report(nodeid, "teardown", "passed", 0.0),
    )


def failing(nodeid: str, duration: float = 0.1) -> tuple[pytest.TestReport, ...]:
    return (
        report(nodeid, "setup", "passed", 0.0),
        report(nodeid, "call", "failed", duration),
        report(nodeid, "teardown", "passed", 0.0),
    )


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def real_run(pytester: pytest.Pytester) -> tuple[list[events.TestFinished], tuple[str, ...]]:
    """Every outcome from a real in-process run: TestFinished events, and collection order."""
    pytester.makepyfile(test_mod=MODULE)
    recorded = pytester.inline_run("-p", "no:cacheprovider")
    grouped: dict[str, list[pytest.TestReport]] = defaultdict(list)
    for rep in recorded.getreports("pytest_runtest_logreport"):
        grouped[rep.nodeid].append(rep)
    order = tuple(grouped)
    return [finished(reps, worker=f"gw{i % 2}") for i, reps in enumerate(grouped.values())], order


def run_events(
    tests: Iterable[events.TestFinished], order: tuple[str, ...], exit_code: int = 1
) -> list[events.RunEvent]:
    return [
        events.RunStarted("run-1", 2, "time"),
        events.WorkerStarted("gw0", 111),
        events.WorkerStarted("gw1", 222),
        collection(order),
        *tests,
        events.RunFinished(tests_not_run=0),
        events.SessionEnded(exit_code=exit_code, aborted=False),
    ]


# --------------------------------------------------------------------------- outcomes


def test_every_outcome_from_a_real_run(
    real_run: tuple[list[events.TestFinished], tuple[str, ...]], tmp_path: Path
) -> None:
    tests, order = real_run
    arrival = list(reversed(tests))  # completion order is not collection order
    path = tmp_path / "report.json"
    feed(JsonWriter(path), run_events(arrival, order))
    data = load(path)

    assert [t["nodeid"] for t in data["tests"]] == list(order)
    assert {t["nodeid"]: t["outcome"] for t in data["tests"]} == EXPECTED
    by_id = {t["nodeid"]: t for t in data["tests"]}

    failed = by_id["test_mod.py::test_fails"]
    assert failed["crash"] == {"path": str(Path.cwd() / "test_mod.py"), "line": ASSERT_LINE}
    assert "assert 1 == 2" in failed["longrepr"]
    assert failed["message"] == "assert 1 == 2"
    assert failed["location"] == {"path": "test_mod.py", "line": ASSERT_LINE - 2}
    assert set(failed["phases"]) == {"setup", "call", "teardown"}
    assert failed["phases"]["call"]["outcome"] == "failed"
    assert failed["duration"] == pytest.approx(
        sum(p["duration"] for p in failed["phases"].values()), abs=1e-5
    )
    assert (failed["origin"], failed["worker"], failed["flaky"]) == ("worker", "gw1", False)
    assert failed["attempts"] == {"count": 1, "earlier": []}

    error = by_id["test_mod.py::test_error"]
    assert error["phases"]["call"] is None
    assert error["phases"]["setup"]["outcome"] == "failed"
    assert "setup exploded" in error["longrepr"]
    teardown = by_id["test_mod.py::test_teardown_error"]
    assert teardown["phases"]["teardown"]["outcome"] == "failed"
    assert "teardown exploded" in teardown["longrepr"]
    assert by_id["test_mod.py::test_skipped"]["message"] == "not today"
    assert by_id["test_mod.py::test_skipped"]["crash"] is None

    passed = by_id["test_mod.py::test_passes"]
    assert passed["stdout"] == "out \x1b[31mred\x1b[0m \U0001f642 \x00 \x08\n"
    assert passed["stderr"] == "err line\n"
    assert "a log line" in passed["log"]
    assert (passed["longrepr"], passed["crash"], passed["truncated"]) == ("", None, [])

    summary = data["summary"]
    assert summary["total"] == len(data["tests"]) == 7
    assert {k: summary[k] for k in EXPECTED.values()} == {
        "passed": 1,
        "failed": 1,
        "error": 2,
        "skipped": 1,
        "xfailed": 1,
        "xpassed": 1,
    }
    assert (data["passed"], data["failed"], data["skipped"]) == (1, 1, 1)
    assert data["exit_code"] == 1
    assert (data["run_id"], data["strategy"], data["planned_workers"]) == ("run-1", "time", 2)


def test_top_level_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    outcome = summarize(
        version=__version__,
        run_id="run-1",
        strategy="time",
        workers=1,
        tests=[RanTest("a.py::t", "gw0", 0.1, "passed")],
        wall_time=0.2,
        not_run=0,
        worker_failures=0,
        execution_failed=False,
    )
    stream = run_events([finished(passing("a.py::t"))], ("a.py::t",), exit_code=0)
    stream[-1] = events.SessionEnded(exit_code=0, aborted=False, outcome=outcome)
    feed(JsonWriter(path), stream)
    data = load(path)

    assert (data["schema_version"], data["tool"]) == (1, "parallel_exec")
    assert list(data)[:2] == ["schema_version", "tool"]
    for key in ("created", "started", "finished"):
        assert data[key].endswith("Z"), data[key]
    assert data["started"] <= data["finished"] <= data["created"]
    assert data["duration"] >= 0
    env = data["environment"]
    assert env["parallel_exec_version"] == __version__
    assert env["pytest_version"] == pytest.__version__
    assert env["cpu_count"] == os.cpu_count()
    assert env["python_version"].count(".") == 2
    assert all(env[key] for key in ("python_implementation", "platform", "hostname"))
    assert data["learning_outcome"] == outcome.model_dump(mode="json")


def test_no_learning_outcome_is_null(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    feed(JsonWriter(path), run_events([finished(passing("a.py::t"))], ("a.py::t",)))
    assert load(path)["learning_outcome"] is None


# --------------------------------------------------------------------------- crash, not run


def test_crashed_and_not_run_tests_and_their_workers(tmp_path: Path) -> None:
    clock = Clock(100.0)
    path = tmp_path / "report.json"
    writer = JsonWriter(path, clock=clock)
    crashed_id, lost_id, ok_id = "t.py::test_dies", "t.py::test_lost", "t.py::test_ok"
    location = ("t.py", None, "test_dies")
    crash = (
        crash_report(crashed_id, location, "worker gw1 crashed while running", "boom\n", "call"),
        closing_report(crashed_id, location),
    )
    never = (
        crash_report(lost_id, ("t.py", None, "test_lost"), "not run: workers crashed", "", "setup"),
        closing_report(lost_id, ("t.py", None, "test_lost")),
    )

    def at(when: float, event: events.RunEvent) -> None:
        clock.now = when
        writer(event)

    at(100.0, events.RunStarted("run-2", 2, "load"))
    at(100.0, events.WorkerStarted("gw0", 10))
    at(101.0, events.WorkerStarted("gw1", 11))
    at(102.0, collection([ok_id, crashed_id, lost_id]))
    at(103.0, finished(passing(ok_id, 2.0), worker="gw0"))
    at(105.0, finished(crash, worker="gw1", origin="crash"))
    at(105.0, events.WorkerCrashed("gw1", -9, crashed_id, "boom\n"))
    at(106.0, events.WorkerStarted("gw2", 12, replaces="gw1"))
    at(107.0, finished(never, worker="-", origin="not-run"))
    at(110.0, events.RunFinished(tests_not_run=0))
    at(111.0, events.SessionEnded(exit_code=1, aborted=False))
    data = load(path)

    by_id = {t["nodeid"]: t for t in data["tests"]}
    dead = by_id[crashed_id]
    assert (dead["origin"], dead["outcome"], dead["worker"]) == ("crash", "failed", "gw1")
    assert "crashed while running" in dead["longrepr"]
    assert dead["stderr"] == "boom\n"
    assert dead["location"] == {"path": "t.py", "line": None}
    lost = by_id[lost_id]
    assert (lost["origin"], lost["outcome"], lost["worker"]) == ("not-run", "error", None)
    assert lost["phases"]["call"] is None

    summary = data["summary"]
    assert (summary["crashed"], summary["not_run"], summary["not_reached"]) == (1, 1, 0)
    assert (summary["passed"], summary["failed"], summary["error"]) == (1, 1, 1)

    workers = {w["id"]: w for w in data["workers"]}
    assert [w["id"] for w in data["workers"]] == ["gw0", "gw1", "gw2"]
    assert workers["gw0"] == {
        "tests_run": 1,
        "busy_seconds": 2.0,
        "idle_seconds": 8.0,  # lifetime 100 -> 110 (the end of the run) minus busy
        "restarts": 0,
        "id": "gw0",
        "pid": 10,
        "lifetime_seconds": 10.0,
        "crashed": False,
        "exit_code": None,
        "crashed_running": None,
        "started_at": 0.0,
        "ready_at": None,
        "ended_at": None,
    }
    gw1 = workers["gw1"]
    assert (gw1["crashed"], gw1["exit_code"], gw1["crashed_running"]) == (True, -9, crashed_id)
    assert (gw1["lifetime_seconds"], gw1["idle_seconds"], gw1["restarts"]) == (4.0, 4.0, 1)
    assert gw1["tests_run"] == 1
    assert (workers["gw2"]["lifetime_seconds"], workers["gw2"]["restarts"]) == (4.0, 0)
    assert data["workerStats"] == {
        w["id"]: {k: w[k] for k in ("tests_run", "busy_seconds", "idle_seconds", "restarts")}
        for w in data["workers"]
    }
    assert "-" not in data["workerStats"]
    assert data["duration"] == 11.0


def test_a_worker_never_seen_starting_lived_since_the_run_started(tmp_path: Path) -> None:
    """A run without -n: tests run in the pytest process, with no WorkerStarted."""
    clock = Clock(50.0)
    path = tmp_path / "report.json"
    writer = JsonWriter(path, clock=clock)
    writer(events.RunStarted("run-4", 1, "serial"))
    clock.now = 52.0
    writer(collection(["a.py::t"]))
    clock.now = 53.0
    writer(finished(passing("a.py::t", 1.0), worker="master"))
    clock.now = 54.0
    writer(events.RunFinished(tests_not_run=0))
    writer(events.SessionEnded(exit_code=0, aborted=False))
    (worker,) = load(path)["workers"]
    assert (worker["id"], worker["pid"], worker["lifetime_seconds"]) == ("master", None, 4.0)
    assert (worker["busy_seconds"], worker["idle_seconds"]) == (1.0, 3.0)


def test_restarts_count_the_replacements_the_controller_names(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    feed(
        JsonWriter(path),
        [
            events.RunStarted("run-3", 2, "load"),
            events.WorkerStarted("gw0", 1),
            events.WorkerStarted("gw1", 2),
            events.WorkerCrashed("gw0", 1, None, ""),
            events.WorkerCrashed("gw1", 1, None, ""),
            events.WorkerStarted("gw2", 3, replaces="gw1"),
            events.WorkerCrashed("gw2", 1, None, ""),
            events.WorkerStarted("gw3", 4),  # started for the run's needs: no one's
            events.RunFinished(tests_not_run=0),
            events.SessionEnded(exit_code=3, aborted=True),
        ],
    )
    data = load(path)
    restarts = {k: v["restarts"] for k, v in data["workerStats"].items()}
    assert restarts == {"gw0": 0, "gw1": 1, "gw2": 0, "gw3": 0}
    assert (data["exit_code"], data["aborted"], data["tests"]) == (3, True, [])


# --------------------------------------------------------------------------- retries


def test_flaky_test_with_earlier_attempts(tmp_path: Path) -> None:
    nodeid = "t.py::test_flaky"
    first = events.Attempt("gw0", failing(nodeid, 0.5))
    second = events.Attempt("gw1", failing(nodeid, 0.25))
    flaky = finished(passing(nodeid, 0.125), worker="gw0", attempts=(first, second))
    stubborn = finished(
        failing("t.py::test_stubborn"),
        worker="gw1",
        attempts=(events.Attempt("gw1", failing("t.py::test_stubborn")),),
    )
    path = tmp_path / "report.json"
    feed(JsonWriter(path), run_events([flaky, stubborn], (nodeid, "t.py::test_stubborn")))
    data = load(path)

    record, other = data["tests"]
    assert (record["outcome"], record["flaky"], record["worker"]) == ("passed", True, "gw0")
    assert record["attempts"]["count"] == 3
    assert [(a["outcome"], a["worker"], a["duration"]) for a in record["attempts"]["earlier"]] == [
        ("failed", "gw0", 0.5),
        ("failed", "gw1", 0.25),
    ]
    assert record["attempts"]["earlier"][0]["longrepr"] == f"AssertionError: {nodeid} call"
    assert record["attempts"]["earlier"][0]["longrepr_truncated"] is False
    assert record["longrepr"] == ""
    assert (other["flaky"], other["attempts"]["count"]) == (False, 2)
    assert (data["summary"]["flaky"], data["summary"]["passed"], data["summary"]["failed"]) == (
        1,
        1,
        1,
    )
    # Earlier attempts were run, and kept their workers busy.
    assert data["workerStats"]["gw0"]["tests_run"] == 2
    assert data["workerStats"]["gw0"]["busy_seconds"] == pytest.approx(0.625)
    assert data["workerStats"]["gw1"]["tests_run"] == 3


# --------------------------------------------------------------------------- caps, text


def test_texts_are_capped_and_marked(tmp_path: Path) -> None:
    nodeid = "t.py::test_loud"
    huge = "".join(f"line {i}\n" for i in range(20_000))  # > 64 Ki characters
    assert len(huge) > TEXT_CAP
    reports = (
        report(nodeid, "setup", "passed", 0.0),
        report(
            nodeid,
            "call",
            "failed",
            longrepr=huge,
            sections=[("Captured stdout call", huge), ("Captured stderr call", "short\n")],
        ),
        report(nodeid, "teardown", "passed", 0.0),
    )
    path = tmp_path / "report.json"
    attempt = events.Attempt("gw0", reports)
    feed(JsonWriter(path), run_events([finished(reports, attempts=(attempt,))], (nodeid,)))
    record = load(path)["tests"][0]

    assert record["truncated"] == ["longrepr", "stdout"]
    assert record["stderr"] == "short\n"
    for text in (record["stdout"], record["longrepr"]):
        assert len(text) < TEXT_CAP + 100
        assert text.startswith("line 0\n")
        assert text.rstrip().endswith("\nline 19999")
        assert "characters cut by parallel_exec" in text
    assert record["attempts"]["earlier"][0]["longrepr_truncated"] is True


def test_a_smaller_cap(tmp_path: Path) -> None:
    nodeid = "t.py::test_t"
    reports = (report(nodeid, "call", "passed", sections=[("Captured log call", "x" * 100)]),)
    path = tmp_path / "report.json"
    feed(JsonWriter(path, text_cap=10), run_events([finished(reports)], (nodeid,)))
    record = load(path)["tests"][0]
    assert record["truncated"] == ["log"]
    assert record["log"] == "xxxxx\n[... 90 characters cut by parallel_exec ...]\nxxxxx"


def test_control_characters_emoji_and_lone_surrogates(tmp_path: Path) -> None:
    nodeid = "t.py::test_odd[\x00-\x1b[31m-\x08-\U0001f642-\ud83d]"
    output = "nul \x00 esc \x1b[0m bs \x08 emoji \U0001f642 lone \udcff\n"
    reports = (report(nodeid, "call", "failed", sections=[("Captured stdout call", output)]),)
    path = tmp_path / "report.json"
    feed(JsonWriter(path), run_events([finished(reports)], (nodeid,)))
    raw = path.read_bytes()
    raw.decode("utf-8")  # strict: no lone surrogate reached the file
    record = load(path)["tests"][0]

    assert record["nodeid"] == "t.py::test_odd[\x00-\x1b[31m-\x08-\U0001f642-\\ud83d]"
    assert record["stdout"] == "nul \x00 esc \x1b[0m bs \x08 emoji \U0001f642 lone \\udcff\n"
    assert "\U0001f642".encode() in raw  # emoji as UTF-8, not escaped
    assert b"\\u0000" in raw  # control characters escaped by JSON
    assert b"\\u001b" in raw
    assert not {0x00, 0x08, 0x1B} & set(raw)


# --------------------------------------------------------------------------- order, counts


def test_collection_order_then_uncollected_in_arrival_order(tmp_path: Path) -> None:
    order = ("a.py::t1", "a.py::t2", "a.py::t3")
    arrivals = ["x.py::late2", "a.py::t3", "x.py::late1", "a.py::t1", "a.py::t2"]
    path = tmp_path / "report.json"
    feed(JsonWriter(path), run_events([finished(passing(n)) for n in arrivals], order))
    nodeids = [t["nodeid"] for t in load(path)["tests"]]
    assert nodeids == [*order, "x.py::late2", "x.py::late1"]


def test_a_nodeid_collected_twice_keeps_both_results(tmp_path: Path) -> None:
    order = ("a.py::t", "a.py::u", "a.py::t")
    tests = [finished(failing("a.py::t")), finished(passing("a.py::u"))]
    tests.append(finished(passing("a.py::t")))
    path = tmp_path / "report.json"
    feed(JsonWriter(path), run_events(tests, order))
    data = load(path)
    assert [(t["nodeid"], t["outcome"]) for t in data["tests"]] == [
        ("a.py::t", "failed"),
        ("a.py::u", "passed"),
        ("a.py::t", "passed"),
    ]
    assert data["summary"]["not_reached"] == 0


def test_collection_errors_deselected_and_tests_never_reached(tmp_path: Path) -> None:
    broken = pytest.CollectReport(
        "broken.py", "failed", "ImportError while importing test module broken.py", []
    )
    fine = pytest.CollectReport("a.py", "passed", None, [])
    stream = run_events(
        [finished(failing("a.py::t1"))], ("a.py::t1", "a.py::t2", "a.py::t3"), exit_code=2
    )
    stream[3] = collection(
        ("a.py::t1", "a.py::t2", "a.py::t3"), (fine, broken), deselected=("a.py::gone",)
    )
    stream[-2] = events.RunFinished(tests_not_run=2)
    stream[-1] = events.SessionEnded(exit_code=2, aborted=True)
    path = tmp_path / "report.json"
    feed(JsonWriter(path), stream)
    data = load(path)

    assert data["collection_errors"] == [
        {
            "nodeid": "broken.py",
            "longrepr": "ImportError while importing test module broken.py",
            "longrepr_truncated": False,
        }
    ]
    summary = data["summary"]
    assert (summary["collection_errors"], summary["deselected"]) == (1, 1)
    assert (summary["total"], summary["not_reached"]) == (1, 2)
    assert data["aborted"] is True


PHASE = st.sampled_from(["passed", "failed", "skipped"])


@st.composite
def a_test(draw: st.DrawFn, index: int) -> events.TestFinished:
    nodeid = f"m.py::test_{index}"
    setup = draw(PHASE)
    reports = [report(nodeid, "setup", setup)]
    extra: dict[str, Any] = {"wasxfail": "reason"} if draw(st.booleans()) else {}
    if setup == "passed":
        reports.append(report(nodeid, "call", draw(PHASE), **extra))
    reports.append(report(nodeid, "teardown", draw(st.sampled_from(["passed", "failed"]))))
    attempts: tuple[events.Attempt, ...] = ()
    if draw(st.booleans()):
        attempts = (events.Attempt(draw(st.sampled_from(["gw0", "gw1"])), failing(nodeid)),)
    origin = draw(st.sampled_from(["worker", "worker", "crash", "not-run"]))
    worker = "-" if origin == "not-run" else draw(st.sampled_from(["gw0", "gw1"]))
    return finished(reports, worker=worker, origin=origin, attempts=attempts)


@st.composite
def a_run(draw: st.DrawFn) -> list[events.TestFinished]:
    count = draw(st.integers(min_value=0, max_value=12))
    return [draw(a_test(i)) for i in range(count)]


@settings(max_examples=60, deadline=None)
@given(tests=a_run(), seed=st.integers(0, 1000))
def test_counts_add_up(tests: list[events.TestFinished], seed: int) -> None:
    order = tuple(t.nodeid for t in tests)
    arrival = list(tests)
    random.Random(seed).shuffle(arrival)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.json"
        feed(JsonWriter(path), run_events(arrival, order))
        data = load(path)

    summary = data["summary"]
    outcomes = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
    assert summary["total"] == len(data["tests"]) == len(tests)
    assert summary["total"] == sum(summary[o] for o in outcomes)
    for outcome in outcomes:
        assert summary[outcome] == sum(t["outcome"] == outcome for t in data["tests"])
    assert (data["passed"], data["failed"], data["skipped"]) == (
        summary["passed"],
        summary["failed"],
        summary["skipped"],
    )
    assert summary["flaky"] == sum(t["flaky"] for t in data["tests"])
    assert [t["nodeid"] for t in data["tests"]] == list(order)
    assert [t["outcome"] for t in data["tests"]] == [t.outcome for t in tests]
    runs = sum(t.attempt_count - (t.origin == "not-run") for t in tests)
    assert sum(w["tests_run"] for w in data["workerStats"].values()) == runs


# --------------------------------------------------------------------------- the file


def test_nothing_is_written_before_the_session_ends(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "report.json"
    writer = JsonWriter(path)
    stream = run_events([finished(passing("a.py::t"))], ("a.py::t",))
    feed(writer, stream[:-1])
    assert not path.parent.exists()
    writer(stream[-1])
    assert load(path)["summary"]["total"] == 1
    path.write_text("old", encoding="utf-8")
    writer(stream[-1])  # written again, whole: replaced, not appended to
    assert load(path)["summary"]["total"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]


def test_a_session_without_a_run_still_writes_a_valid_report(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    JsonWriter(path)(events.SessionEnded(exit_code=4, aborted=False))
    data = load(path)
    assert (data["run_id"], data["exit_code"], data["tests"], data["workers"]) == (
        None,
        4,
        [],
        [],
    )


# --------------------------------------------------------------------------- the schema


def test_committed_schema_matches_the_models() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
    assert committed == json_report.schema_text(), (
        f"{SCHEMA_FILE} is out of date with the JsonReport models; regenerate it with\n"
        f"    {REGENERATE}\nand bump SCHEMA_VERSION if a field was removed, renamed or retyped"
    )


def test_schema_is_versioned_and_names_the_compatibility_fields() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema_version"]["const"] == json_report.SCHEMA_VERSION == 1
    required = set(schema["required"])
    assert {"schema_version", "passed", "failed", "skipped", "duration", "workerStats"} <= required
    assert {"environment", "summary", "workers", "tests", "learning_outcome"} <= required


def test_a_real_validator_rejects_a_broken_report(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    path = tmp_path / "report.json"
    feed(JsonWriter(path), run_events([finished(passing("a.py::t"))], ("a.py::t",)))
    data = load(path)
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text("utf-8")))
    for broken in (
        {k: v for k, v in data.items() if k != "workerStats"},
        {**data, "schema_version": 2},
        {**data, "tests": [{**data["tests"][0], "outcome": "sort of"}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)


def test_docs_describe_every_top_level_field() -> None:
    """docs/reports-json.md names every top-level field of the schema."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "reports-json.md"
    if not doc.exists():
        pytest.skip("docs are not shipped with the package")
    text = doc.read_text(encoding="utf-8")
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    missing = [name for name in schema["properties"] if f"`{name}`" not in text]
    assert not missing, f"docs/reports-json.md does not describe {missing}"
