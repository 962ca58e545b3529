"""The timing history across real runs: where it lives, what it changes, how it degrades.

Every run is a real ``pytest -p parallel_exec -n 2`` in a subprocess.  What a user should
see: the first run of a suite plans by ``load`` and writes the history; the next one
plans by ``time`` from it and prints the learning summary; ``--report-outcome`` writes the
same figures as JSON; the store's location follows ``--history``, ``--no-history`` and
pytest's ``cache_dir``; and a store that is corrupt, locked by another process, or
written by a concurrent run never fails the run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from parallel_exec.history.learning import LearningOutcome
from parallel_exec.history.store import HistoryStore, TestResult, TestTiming

if TYPE_CHECKING:
    from conftest import PluginRunner

#: Where a run keeps the history by default, relative to the rootdir.
DEFAULT_HISTORY = Path(".pytest_cache", "parallel_exec", "history.sqlite")
#: Ordinary runs here take a few seconds; a hung one must fail the test, not CI.
TIMEOUT = 60.0

SUMMARY_LINE = re.compile(
    r"^parallel_exec: (?P<workers>\d+) workers? \((?P<strategy>[\w-]+)\), wall [\d.]+s "
    r"for [\d.]+s of tests: speedup [\d.]+x, efficiency \d+%$"
)
#: Shown with -v: the graded record.
MAKESPAN_LINE = re.compile(
    r"^parallel_exec: makespan [\d.]+s(?P<predicted> \(predicted [\d.]+s\))?, "
    r"lower bound [\d.]+s(, actual/LB [\d.]+)?, balance \d+%, "
    r"stragglers (?P<stragglers>\d+), reward (?P<reward>[\d.]+)$"
)

PASSING_SUITE = {
    "test_first": """
        import time

        import pytest


        @pytest.mark.parametrize("n", range(3))
        def test_numbers(n):
            time.sleep(0.01)


        def test_plain():
            pass
    """,
    "test_second": """
        class TestGrouped:
            def test_one(self):
                pass

            def test_two(self):
                pass
    """,
}
PASSING_NODEIDS = frozenset(
    {
        "test_first.py::test_numbers[0]",
        "test_first.py::test_numbers[1]",
        "test_first.py::test_numbers[2]",
        "test_first.py::test_plain",
        "test_second.py::TestGrouped::test_one",
        "test_second.py::TestGrouped::test_two",
    }
)

MIXED_SUITE = """
    import pytest


    @pytest.fixture
    def broken():
        raise RuntimeError("setup fails")


    def test_pass_one():
        pass


    def test_pass_two():
        pass


    def test_fails():
        assert 1 == 2


    def test_skips():
        pytest.skip("not today")


    @pytest.mark.xfail(reason="known")
    def test_xfails():
        assert 0


    @pytest.mark.xfail(reason="fixed meanwhile", strict=False)
    def test_xpasses():
        pass


    def test_setup_error(broken):
        pass
"""


# ---------------------------------------------------------------------------- helpers


def passing_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{name: textwrap.dedent(body) for name, body in PASSING_SUITE.items()})


def summary_line(result: pytest.RunResult) -> re.Match[str]:
    """The summary line every parallel run prints, parsed; fails if it is missing."""
    lines = [line for line in result.outlines if line.startswith("parallel_exec: ")]
    summary = next((m for m in map(SUMMARY_LINE.match, lines) if m), None)
    assert summary is not None, "no learning summary line in:\n" + "\n".join(result.outlines)
    return summary


def learning_summary(result: pytest.RunResult) -> tuple[re.Match[str], re.Match[str]]:
    """The summary line and the graded line of a ``-v`` run, parsed."""
    lines = [line for line in result.outlines if line.startswith("parallel_exec: ")]
    makespan = next((m for m in map(MAKESPAN_LINE.match, lines) if m), None)
    assert makespan is not None, "no makespan line in:\n" + "\n".join(result.outlines)
    return summary_line(result), makespan


def strategy_of(result: pytest.RunResult) -> str:
    return summary_line(result)["strategy"]


def header_dist(runner: PluginRunner, result: pytest.RunResult) -> str:
    """The ``dist=...`` the session header shows."""
    found = [
        m.group(1)
        for line in runner.header_lines(result)
        if (m := re.search(r"^parallel_exec: .*\bdist=([\w-]+)", line))
    ]
    assert len(found) == 1, runner.header_lines(result)
    return found[0]


def stored(path: Path) -> tuple[dict[str, TestTiming], list[dict[str, Any]]]:
    """What a history file holds: its test rows and run records (read strictly)."""
    store = HistoryStore.open_strict(path)
    try:
        return store.timings(), [record for _, _, record in store.all_runs()]
    finally:
        store.close()


def seed_history(path: Path, nodeids: frozenset[str], duration: float = 0.01) -> None:
    """A history that knows every test of a suite, as an earlier run would have left it."""
    store = HistoryStore.open_strict(path)
    try:
        store.record(
            [TestResult(nodeid, duration, "passed") for nodeid in sorted(nodeids)],
            run={"seeded": True},
            run_id="seed",
        )
    finally:
        store.close()


def output_of(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


# ---------------------------------------------------------------------------- learning


def test_first_run_by_load_then_by_time_with_the_learning_summary(
    runner: PluginRunner,
) -> None:
    runner.pytester.makepyfile(test_mixed=MIXED_SUITE)
    history = runner.pytester.path / DEFAULT_HISTORY

    first = runner.run("--report-outcome", "first.json", workers=2, timeout=TIMEOUT)
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    assert history.is_file()
    timings, records = stored(history)
    assert len(timings) == 7
    assert {t.runs for t in timings.values()} == {1}
    assert strategy_of(first) == "load"
    assert [r["strategy"] for r in records] == ["load"]

    second = runner.run("-v", "--report-outcome", "out.json", workers=2, timeout=TIMEOUT)
    assert second.ret == pytest.ExitCode.TESTS_FAILED
    summary, makespan = learning_summary(second)
    assert (summary["strategy"], summary["workers"]) == ("time", "2")
    assert makespan["predicted"], "a planned run predicts its makespan"
    timings, records = stored(history)
    assert {t.runs for t in timings.values()} == {2}
    assert [r["strategy"] for r in records] == ["load", "time"]

    # --report-outcome: valid JSON, a valid record, the same figures as the summary line.
    report = runner.pytester.path / "out.json"
    outcome = LearningOutcome.model_validate(json.loads(report.read_text(encoding="utf-8")))
    assert records[-1] == outcome.model_dump(mode="json")
    assert (outcome.strategy, outcome.workers) == ("time", 2)
    assert outcome.reward == float(makespan["reward"])
    assert outcome.predicted_makespan is not None
    counts = second.parseoutcomes()
    assert outcome.passed == counts["passed"] + counts["xpassed"] == 3
    assert outcome.skipped == counts["skipped"] + counts["xfailed"] == 2
    assert outcome.failed == counts["failed"] == 1
    assert outcome.errors == counts["errors"] == 1
    assert (
        outcome.tests_executed
        == 7
        == sum((outcome.passed, outcome.failed, outcome.skipped, outcome.errors))
    )
    assert outcome.not_run == 0
    assert outcome.reward <= 0.9  # tests failed: never 1.0
    assert outcome.lower_bound <= outcome.actual_makespan
    assert not list(runner.pytester.path.glob(".out.json.*"))  # no temporary file left

    # The header names the strategy the run uses, not the option's "auto".
    assert (header_dist(runner, first), header_dist(runner, second)) == ("load", "time")


# ---------------------------------------------------------------------------- location


def test_no_history_neither_reads_nor_writes(runner: PluginRunner) -> None:
    passing_suite(runner.pytester)
    history = runner.pytester.path / DEFAULT_HISTORY

    fresh = runner.run("--no-history", workers=2, timeout=TIMEOUT)
    assert fresh.ret == pytest.ExitCode.OK
    assert not history.exists()
    assert not history.parent.exists()

    seed_history(history, PASSING_NODEIDS)
    before = stored(history)
    known = runner.run("--no-history", workers=2, timeout=TIMEOUT)
    assert known.ret == pytest.ExitCode.OK
    assert strategy_of(known) == "load"  # it did not read the history (auto -> time)
    assert stored(history) == before  # nor write it


def test_history_option_chooses_the_file(runner: PluginRunner) -> None:
    passing_suite(runner.pytester)
    result = runner.run("--history", "custom.sqlite", workers=2, timeout=TIMEOUT)
    assert result.ret == pytest.ExitCode.OK
    timings, records = stored(runner.pytester.path / "custom.sqlite")
    assert set(timings) == PASSING_NODEIDS
    assert len(records) == 1
    assert not (runner.pytester.path / DEFAULT_HISTORY).exists()


def test_default_path_without_the_cache_plugin(runner: PluginRunner) -> None:
    passing_suite(runner.pytester)
    result = runner.run("-p", "no:cacheprovider", workers=2, timeout=TIMEOUT)
    assert result.ret == pytest.ExitCode.OK
    timings, _ = stored(runner.pytester.path / DEFAULT_HISTORY)
    assert set(timings) == PASSING_NODEIDS


@pytest.mark.parametrize("cache_plugin", ["on", "off"])
def test_cache_dir_ini_option_is_respected(runner: PluginRunner, cache_plugin: str) -> None:
    passing_suite(runner.pytester)
    runner.pytester.makeini("[pytest]\ncache_dir = build/cache\n")
    args = ("-p", "no:cacheprovider") if cache_plugin == "off" else ()
    result = runner.run(*args, workers=2, timeout=TIMEOUT)
    assert result.ret == pytest.ExitCode.OK
    timings, _ = stored(
        runner.pytester.path / "build" / "cache" / "parallel_exec" / "history.sqlite"
    )
    assert set(timings) == PASSING_NODEIDS
    assert not (runner.pytester.path / DEFAULT_HISTORY).exists()


# ---------------------------------------------------------------------------- degrading


def test_corrupt_store_is_moved_aside_with_one_warning(runner: PluginRunner) -> None:
    passing_suite(runner.pytester)
    history = runner.pytester.path / DEFAULT_HISTORY
    history.parent.mkdir(parents=True)
    garbage = bytes(range(256)) * 12
    history.write_bytes(garbage)

    result = runner.run(workers=2, timeout=TIMEOUT)

    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes() == {"passed": len(PASSING_NODEIDS), "warnings": 1}
    runner.assert_no_traceback(result)
    output = output_of(result)
    assert output.count("is not a valid store") == 1, output
    assert str(history) in output
    (aside,) = history.parent.glob("history.sqlite.invalid-*")
    assert aside.read_bytes() == garbage  # moved, never deleted or changed
    assert aside.name in output
    assert strategy_of(result) == "load"  # an empty history: nothing to plan by
    timings, _ = stored(history)
    assert set(timings) == PASSING_NODEIDS  # the new store has this run


LOCK_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes our stdin
    db.execute("ROLLBACK")
    """
)


@pytest.mark.slow
def test_store_locked_by_another_process_for_the_whole_run(runner: PluginRunner) -> None:
    """The run plans from the history (WAL readers are not blocked), runs every test, and
    skips writing after the busy timeout with a warning, instead of failing or hanging."""
    passing_suite(runner.pytester)
    history = runner.pytester.path / DEFAULT_HISTORY
    history.parent.mkdir(parents=True)
    seed_history(history, PASSING_NODEIDS)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(history)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        result = runner.run(workers=2, timeout=TIMEOUT)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()

    assert result.ret == pytest.ExitCode.OK
    runner.assert_no_traceback(result)
    assert result.parseoutcomes()["passed"] == len(PASSING_NODEIDS)
    assert strategy_of(result) == "time"
    output = output_of(result)
    assert "locked" in output, output
    assert str(history) in output, output
    timings, records = stored(history)
    assert {t.runs for t in timings.values()} == {1}  # this run's write was skipped
    assert records == [{"seeded": True}]
    # Reported like every other parallel_exec warning: in pytest's warnings summary.
    assert result.parseoutcomes().get("warnings") == 1, output


CONCURRENT_SUITE = """
    import time

    import pytest


    @pytest.mark.parametrize("n", range(4))
    def test_{name}(n):
        time.sleep(0.05)
"""


@pytest.mark.slow
def test_two_runs_writing_one_store_at_the_same_time(runner: PluginRunner) -> None:
    shared = runner.pytester.path / "shared" / "history.sqlite"
    runs = []
    for name in ("alpha", "beta"):
        suite = runner.pytester.mkdir(name)
        (suite / f"test_{name}.py").write_text(
            textwrap.dedent(CONCURRENT_SUITE).replace("{name}", name), encoding="utf-8"
        )
        runs.append(suite)
    processes = [
        subprocess.Popen(
            runner.command("--history", str(shared), workers=2),
            cwd=suite,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for suite in runs
    ]
    outputs = []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        outputs.append((process.returncode, output))

    for code, output in outputs:
        assert code == 0, output
        assert "warning" not in output.lower(), output
    timings, records = stored(shared)
    assert set(timings) == {
        f"test_{name}.py::test_{name}[{n}]" for name in ("alpha", "beta") for n in range(4)
    }
    assert len(records) == 2


STRAGGLER_SUITE = """
    import os
    import time

    import pytest


    @pytest.mark.parametrize("n", range(10))
    def test_steady(n):
        if n == 0:
            time.sleep(3.0 if os.environ.get("STRAGGLE") else 0.6)
        else:
            time.sleep(0.3)
"""


@pytest.mark.slow
def test_a_straggler_does_not_hang_a_planned_run(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that runs far beyond its history marks its worker a straggler; the run must
    still finish.

    The first run teaches the history that test 0 takes 0.6 s and the others 0.3 s, so
    the second run (planned by ``time``, longest first) starts test 0 first on one worker,
    with plenty of work left.  This time it takes 3 s, well beyond 0.6 + 0.5 s (even if
    the first run measured it slowly, on a loaded machine): its worker is a straggler
    until it finishes, and the request for work it sends with that result must still be
    answered.
    """
    runner.pytester.makepyfile(test_straggle=STRAGGLER_SUITE)
    first = runner.run(workers=2, timeout=TIMEOUT)
    assert first.ret == pytest.ExitCode.OK

    monkeypatch.setenv("STRAGGLE", "1")
    second = runner.run("-v", workers=2, timeout=TIMEOUT)  # -v names the stragglers
    assert second.ret == pytest.ExitCode.OK, output_of(second)
    assert second.parseoutcomes()["passed"] == 10
    assert strategy_of(second) == "time"
    assert "straggler test_straggle.py::test_steady[0]" in output_of(second)


def test_the_run_lines_have_their_own_section_under_rA(runner: PluginRunner) -> None:
    """With ``-rA`` pytest's last section is PASSES: the run's own lines are not in it."""
    passing_suite(runner.pytester)
    result = runner.run("-rA", workers=2, timeout=TIMEOUT)
    assert result.ret == 0
    lines = result.outlines
    section = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ parallel_exec =+", line))
    passes = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ PASSES =+", line))
    summary = next(i for i, line in enumerate(lines) if SUMMARY_LINE.match(line))
    assert passes < section < summary


LONG_FILE = """
    import time

    import pytest


    @pytest.mark.parametrize("n", range(6))
    def test_long(n):
        time.sleep(0.7)
"""

QUICK_FILE = """
    import pytest


    @pytest.mark.parametrize("n", range(40))
    def test_quick(n):
        pass
"""


@pytest.mark.slow
def test_a_first_run_takes_back_tests_a_busy_worker_has_not_started(
    runner: PluginRunner,
) -> None:
    """Without history (``load``), chunks are sized by count: the worker that collected
    the long tests' file gets all six in its first chunk, the other runs through the
    quick ones and then has nothing left to take.  It takes back the long tests the busy
    worker has not started, so both run some (before: six in a row on one worker)."""
    runner.pytester.makepyfile(test_a_long=LONG_FILE, test_b_quick=QUICK_FILE)
    report = runner.pytester.path / "report.json"
    result = runner.run("--report-json", str(report), workers=2, timeout=TIMEOUT)
    assert result.ret == pytest.ExitCode.OK, output_of(result)
    assert result.parseoutcomes()["passed"] == 46
    assert strategy_of(result) == "load"
    tests = json.loads(report.read_text(encoding="utf-8"))["tests"]
    assert len(tests) == 46
    long_on = {t["worker"] for t in tests if "test_long" in t["nodeid"]}
    assert len(long_on) == 2, [(t["nodeid"], t["worker"]) for t in tests]
