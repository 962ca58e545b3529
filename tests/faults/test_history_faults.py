"""A damaged or read-only timing history never fails a run, nor changes its results.

The store is a real SQLite file that real earlier runs left (seeded here through
``HistoryStore``), then damaged as a bad sector or a torn copy would (one page
overwritten, the header still valid) or restored read-only (a CI cache mounted
read-only).  What a user must see: every test reported once, exit 0, one warning that
says what was done with the file, never an ``INTERNALERROR``; and readable timings
still plan the run (``dist=time``).
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from faults_helpers import FaultRun, assert_accounted, assert_no_process_left, run_fault

from parallel_exec.history.store import HistoryStore, TestResult
from read_only_fs import files_of, read_only

if TYPE_CHECKING:
    from conftest import PluginRunner

SUITE = """
    import pytest

    @pytest.mark.parametrize("n", range(12))
    def test_many(n):
        pass

    def test_plain():
        pass
"""
NODEIDS = [f"test_suite.py::test_many[{n}]" for n in range(12)] + ["test_suite.py::test_plain"]
#: Rows of tests that are not in this suite, so that every table spans several pages.
OTHER_ROWS = 300


def seed_history(path: Path) -> None:
    """A store as earlier runs leave it: this suite's tests and many others, run records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    store = HistoryStore.open_strict(path)
    try:
        others = [TestResult(f"old_test.py::test_{i}", 0.02, "passed") for i in range(OTHER_ROWS)]
        for run in range(3):
            store.record(
                [TestResult(nodeid, 0.01, "passed") for nodeid in NODEIDS] + others,
                run={"seeded": run, "padding": "x" * 2000},
                run_id=f"seed-{run}",
            )
    finally:
        store.close()


def damage_page(path: Path, table: str) -> bytes:
    """Overwrite the root page of ``table``; the 100-byte header stays valid."""
    db = sqlite3.connect(str(path))
    try:
        size = int(db.execute("PRAGMA page_size").fetchone()[0])
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()
    finally:
        db.close()
    assert root > 1
    with path.open("r+b") as fh:
        fh.seek((root - 1) * size)
        fh.write((b"\xde\xad\xbe\xef" * size)[:size])
    return path.read_bytes()


def parallel_exec_warnings(run: FaultRun) -> list[str]:
    """The ``ParallelExecWarning`` messages of the warnings summary."""
    return re.findall(r"ParallelExecWarning: parallel_exec: (.*)$", run.output, re.MULTILINE)


def header(runner: PluginRunner, run: FaultRun) -> str:
    (line,) = [line for line in runner.header_lines(run.result) if "dist=" in line]
    return line


def assert_clean_pass(runner: PluginRunner, run: FaultRun) -> None:
    """Exit 0, every test reported once and passed, no traceback, no process left."""
    assert run.exit_code == 0, run.output
    assert_accounted(run, len(NODEIDS))
    assert set(run.outcomes().values()) == {"passed"}, run.output
    runner.assert_no_traceback(run.result)
    assert_no_process_left(run)


@pytest.mark.slow
@pytest.mark.parametrize("table", ["tests", "runs"])
def test_damaged_page_is_moved_aside_and_the_run_passes(runner: PluginRunner, table: str) -> None:
    """Was an ``INTERNALERROR`` on every run: at configure time when planning read the
    damaged ``tests`` page (no tests run), at the final write for ``runs`` (exit 3)."""
    runner.pytester.makepyfile(test_suite=textwrap.dedent(SUITE))
    history = runner.pytester.path / "history" / "history.sqlite"
    seed_history(history)
    damaged = damage_page(history, table)

    run = run_fault(runner, "--history", str(history))

    assert_clean_pass(runner, run)
    (warning,) = parallel_exec_warnings(run)
    assert f"the timing history {history} is not a valid store" in warning, warning
    (aside,) = history.parent.glob("history.sqlite.invalid-*")
    assert f"moved it to {aside.name} and started an empty history" in warning, warning
    assert aside.read_bytes() == damaged  # moved, never deleted or changed
    assert "dist=load" in header(runner, run)  # the empty history has nothing to plan by
    store = HistoryStore.open_strict(history)
    try:
        assert set(store.timings()) == set(NODEIDS)  # the new store has this run
    finally:
        store.close()


@pytest.mark.slow
def test_read_only_store_plans_the_run_and_is_not_written(runner: PluginRunner) -> None:
    """Was: not used for planning, and a warning about renaming it aside."""
    runner.pytester.makepyfile(test_suite=textwrap.dedent(SUITE))
    history = runner.pytester.path / "cache" / "history.sqlite"
    seed_history(history)
    before = files_of(history.parent)

    with read_only(history.parent) as directory:
        path = directory / history.name
        run = run_fault(runner, "--history", str(path))

    assert_clean_pass(runner, run)
    assert "dist=time" in header(runner, run), run.output
    assert f"history: {len(NODEIDS) + OTHER_ROWS} tests known" in header(runner, run)
    (warning,) = parallel_exec_warnings(run)
    assert warning == (
        f"the timing history {path} is read-only: this run plans from it but does not "
        f"record its timings in it"
    )
    assert "moved" not in run.output, run.output
    assert "invalid-" not in run.output, run.output
    assert files_of(history.parent) == before


@pytest.mark.slow
def test_damaged_read_only_store_is_ignored_and_left_as_it_is(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_suite=textwrap.dedent(SUITE))
    history = runner.pytester.path / "cache" / "history.sqlite"
    seed_history(history)
    damage_page(history, "tests")
    before = files_of(history.parent)

    with read_only(history.parent) as directory:
        path = directory / history.name
        run = run_fault(runner, "--history", str(path))

    assert_clean_pass(runner, run)
    assert "dist=load" in header(runner, run)
    assert "tests known" not in header(runner, run)  # no store in this run
    (warning,) = parallel_exec_warnings(run)
    assert warning.startswith(f"the timing history {path} cannot be used in this run"), warning
    assert "not a valid store" in warning, warning
    assert "it is read-only, so it was left as it is" in warning, warning
    assert "moved" not in run.output, run.output
    assert "invalid-" not in run.output, run.output
    assert files_of(history.parent) == before


HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_store_locked_by_another_process_is_skipped(runner: PluginRunner) -> None:
    """Another process holds the store's write lock for the whole run: the run still
    plans from it (readers are not blocked in WAL mode), then waits the busy timeout for
    its write, gives up and says so."""
    runner.pytester.makepyfile(test_suite=textwrap.dedent(SUITE))
    history = runner.pytester.path / "history" / "history.sqlite"
    seed_history(history)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(history)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        run = run_fault(runner, "--history", str(history))
    finally:
        holder.kill()
        holder.wait()
    assert_clean_pass(runner, run)
    (warning,) = parallel_exec_warnings(run)
    assert warning == f"could not write the timing history {history}: database is locked"
    assert "dist=time" in header(runner, run), run.output
    assert not list(history.parent.glob("*.invalid-*"))  # a locked store is never moved


@pytest.mark.slow
def test_two_runs_writing_one_store_at_once_lose_nothing(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_suite=textwrap.dedent(SUITE))
    history = runner.pytester.path / "history" / "history.sqlite"
    seed_history(history)
    commands = [
        runner.command("--history", str(history), "-q", "-p", "no:cacheprovider", workers=2)
        for _ in range(2)
    ]
    processes = [
        subprocess.Popen(c, cwd=runner.pytester.path, stdout=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
        assert "13 passed" in output, output
        assert "INTERNALERROR" not in output, output
    store = HistoryStore.open_strict(history)
    try:
        assert len(store.all_runs()) == 3 + 2  # the seeded runs and both of these
        assert all(store.timings()[n].runs == 3 + 2 for n in NODEIDS)
    finally:
        store.close()
