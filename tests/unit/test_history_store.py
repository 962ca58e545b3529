"""``HistoryStore`` on real SQLite files: the maths, the schema, and how it degrades.

Every test works on a real file in ``tmp_path``; locks are real locks held by a second
connection, concurrent writers are real processes.  The only thing adjusted is
configuration (the busy timeout, the migration table), never the store itself.

Why these matter: the history is shared by every run of a project (and by concurrent
runs), it survives upgrades of the plugin, and it must never fail a test run nor lose
a user's file: an unusable store is moved aside with one warning, never deleted.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from parallel_exec.errors import HistoryError, HistoryUnavailable
from parallel_exec.history import store as history
from parallel_exec.history.store import (
    ALPHA,
    DEFAULT_ESTIMATE,
    SCHEMA_VERSION,
    HistoryStore,
    TestResult,
    TestTiming,
    estimate_durations,
)
from read_only_fs import files_of, read_only

#: A short busy timeout for the lock tests (configuration read at open time).
SHORT_BUSY_TIMEOUT = 0.3


# ---------------------------------------------------------------------------- helpers


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "parallel_exec" / "history.sqlite"


@pytest.fixture
def store(store_path: Path) -> Iterator[HistoryStore]:
    opened = HistoryStore.open_strict(store_path)
    yield opened
    opened.close()


def results(durations: dict[str, float], outcome: str = "passed") -> list[TestResult]:
    return [TestResult(nodeid, duration, outcome) for nodeid, duration in durations.items()]


def reference_fold(durations: Sequence[float], alpha: float) -> tuple[float, float]:
    """The recency-weighted mean and variance, computed the textbook way in Python.

    First value: mean = x, var = 0.  Then for each x: d = x - mean,
    mean += alpha * d, var = (1 - alpha) * (var + alpha * d * d).
    """
    mean, var = durations[0], 0.0
    for x in durations[1:]:
        d = x - mean
        mean, var = mean + alpha * d, (1 - alpha) * (var + alpha * d * d)
    return mean, var


def make_store(path: Path, durations: dict[str, float], run_id: str | None = None) -> None:
    """A real, valid store with some rows, closed again."""
    created = HistoryStore.open_strict(path)
    try:
        created.record(results(durations), run={"marker": run_id}, run_id=run_id, now=1000.0)
    finally:
        created.close()


def set_schema_version(path: Path, version: object) -> None:
    """Rewrite the store's version, as an older or newer parallel_exec would have left it."""
    db = sqlite3.connect(str(path))
    try:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
        db.commit()
    finally:
        db.close()


def schema_version(path: Path) -> str:
    db = sqlite3.connect(str(path))
    try:
        return str(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    finally:
        db.close()


def moved_aside(path: Path) -> list[Path]:
    """The ``.invalid-...`` files next to ``path`` (the store itself and its -wal/-shm)."""
    return sorted(
        p
        for p in path.parent.glob(path.name + ".invalid-*")
        if not p.name.endswith(("-wal", "-shm"))
    )


def open_collecting_warnings(path: Path) -> tuple[HistoryStore, list[str]]:
    warnings: list[str] = []
    return HistoryStore.open(path, warnings.append), warnings


def assert_empty_and_usable(store: HistoryStore) -> None:
    """A store that replaced an unusable one: empty, and it takes and returns rows."""
    assert store.timings() == {}
    assert store.runs() == []
    store.record(results({"t.py::test_after": 0.5}), run={"ok": True}, run_id="after")
    assert store.timings()["t.py::test_after"].mean == 0.5
    assert store.runs() == [{"ok": True}]


# ---------------------------------------------------------------------------- creation


def test_open_creates_the_file_and_its_directories(store_path: Path) -> None:
    assert not store_path.parent.exists()
    created = HistoryStore.open(store_path)
    try:
        assert store_path.is_file()
        assert schema_version(store_path) == str(SCHEMA_VERSION)
        assert created.timings() == {}
        assert created.slowest() == []
        assert created.runs() == []
    finally:
        created.close()


def test_rows_survive_closing_and_reopening(store_path: Path) -> None:
    make_store(store_path, {"t.py::test_a": 1.5, "t.py::test_b": 0.25})
    reopened = HistoryStore.open_strict(store_path)
    try:
        assert {n: t.mean for n, t in reopened.timings().items()} == {
            "t.py::test_a": 1.5,
            "t.py::test_b": 0.25,
        }
    finally:
        reopened.close()


# ---------------------------------------------------------------------------- the maths


def test_alpha_is_the_documented_weight() -> None:
    # The hand-computed figures below are for this weight.
    assert ALPHA == 0.3


def test_mean_and_variance_by_hand(store: HistoryStore) -> None:
    """Four runs of one test, 1 s, 2 s, 4 s, 3 s, worked out by hand with alpha = 0.3.

    run 1: mean 1,                         var 0
    run 2: d = 1,    mean 1.3,             var 0.7 * (0 + 0.3 * 1)          = 0.21
    run 3: d = 2.7,  mean 2.11,            var 0.7 * (0.21 + 0.3 * 7.29)    = 1.6779
    run 4: d = 0.89, mean 2.377,           var 0.7 * (1.6779 + 0.3 * 0.7921) = 1.340871
    """
    expected = [(1.0, 0.0), (1.3, 0.21), (2.11, 1.6779), (2.377, 1.340871)]
    durations = [1.0, 2.0, 4.0, 3.0]
    for run, (duration, (mean, var)) in enumerate(zip(durations, expected, strict=True), 1):
        store.record(results({"t.py::test_x": duration}), now=float(run))
        timing = store.timings()["t.py::test_x"]
        assert timing.runs == run
        assert timing.mean == pytest.approx(mean, abs=1e-12)
        assert timing.var == pytest.approx(var, abs=1e-12)
        assert timing.stdev == pytest.approx(math.sqrt(var), abs=1e-12)
        assert timing.last_duration == duration


@pytest.mark.parametrize(
    "durations",
    [
        [0.1, 0.1, 0.1, 0.1],
        [5.0, 0.01, 5.0, 0.01, 5.0],
        [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8],
        [3.0, 2.5, 2.0, 1.5, 1.0, 0.5],
    ],
    ids=["constant", "alternating", "doubling", "falling"],
)
def test_mean_and_variance_match_the_textbook_fold(
    store: HistoryStore, durations: list[float]
) -> None:
    for run, duration in enumerate(durations):
        store.record(results({"t.py::test_x": duration}), now=float(run))
    mean, var = reference_fold(durations, ALPHA)
    timing = store.timings()["t.py::test_x"]
    assert timing.runs == len(durations)
    assert timing.mean == pytest.approx(mean, rel=1e-12)
    assert timing.var == pytest.approx(var, rel=1e-12, abs=1e-15)


def test_newer_durations_weigh_more(store: HistoryStore) -> None:
    """After many fast runs a slow streak pulls the mean most of the way within a few runs."""
    for run in range(20):
        store.record(results({"t.py::test_x": 1.0}), now=float(run))
    for run in range(20, 25):
        store.record(results({"t.py::test_x": 3.0}), now=float(run))
    # 1 + 2 * (1 - 0.7 ** 5): an unweighted mean would still be 1.4.
    assert store.timings()["t.py::test_x"].mean == pytest.approx(1 + 2 * (1 - 0.7**5))


def test_last_duration_outcome_seen_and_flaky_count(store: HistoryStore) -> None:
    store.record([TestResult("t.py::test_x", 0.5, "passed")], now=100.0)
    store.record([TestResult("t.py::test_x", 0.7, "failed", flaky=True)], now=200.0)
    store.record([TestResult("t.py::test_x", 0.6, "skipped", flaky=True)], now=300.0)
    store.record([TestResult("t.py::test_x", 0.9, "passed")], now=400.0)
    timing = store.timings()["t.py::test_x"]
    assert timing.last_duration == 0.9
    assert timing.last_outcome == "passed"
    assert timing.last_seen == 400.0
    assert timing.flaky_count == 2
    assert timing.runs == 4


def test_a_test_absent_from_a_run_keeps_its_row(store: HistoryStore) -> None:
    store.record(results({"t.py::test_a": 1.0, "t.py::test_b": 2.0}), now=1.0)
    store.record(results({"t.py::test_a": 3.0}), now=2.0)
    timings = store.timings()
    assert timings["t.py::test_b"] == TestTiming("t.py::test_b", 1, 2.0, 0.0, 2.0, "passed", 1.0)
    assert timings["t.py::test_a"].runs == 2


def test_record_without_now_uses_the_wall_clock(store: HistoryStore) -> None:
    before = time.time()
    store.record(results({"t.py::test_x": 0.1}))
    assert before <= store.timings()["t.py::test_x"].last_seen <= time.time()


# ---------------------------------------------------------------------------- reading


def test_timings_filter_by_nodeids(store: HistoryStore) -> None:
    store.record(results({"a.py::test_1": 1.0, "a.py::test_2": 2.0, "b.py::test_3": 3.0}))
    assert set(store.timings()) == {"a.py::test_1", "a.py::test_2", "b.py::test_3"}
    assert set(store.timings(["a.py::test_2", "b.py::test_3", "c.py::unknown"])) == {
        "a.py::test_2",
        "b.py::test_3",
    }
    assert store.timings([]) == {}
    # Any iterable, read once (a generator is not a list).
    assert set(store.timings(n for n in ["a.py::test_1"])) == {"a.py::test_1"}


def test_slowest_by_mean_with_a_limit(store: HistoryStore) -> None:
    store.record(results({f"t.py::test_{i}": float(i) for i in range(10)}))
    assert [t.nodeid for t in store.slowest(3)] == ["t.py::test_9", "t.py::test_8", "t.py::test_7"]
    assert len(store.slowest()) == 10
    assert [t.mean for t in store.slowest(100)] == sorted(map(float, range(10)), reverse=True)


def test_runs_round_trip_newest_first(store: HistoryStore) -> None:
    records = [{"run": i, "strategy": "time", "nested": {"speedup": i / 2}} for i in range(4)]
    for i, record in enumerate(records):
        store.record(results({"t.py::test_x": 0.1}), run=record, run_id=f"run-{i}", now=10.0 + i)
    assert store.runs() == list(reversed(records))
    assert store.runs(limit=2) == [records[3], records[2]]
    assert store.all_runs() == [(f"run-{i}", 10.0 + i, r) for i, r in enumerate(records)]


def test_same_run_id_replaces_and_no_run_id_stores_no_run(store: HistoryStore) -> None:
    store.record([], run={"v": 1}, run_id="same", now=1.0)
    store.record([], run={"v": 2}, run_id="same", now=2.0)
    store.record([], run={"v": 3}, run_id=None, now=3.0)
    assert store.all_runs() == [("same", 2.0, {"v": 2})]


# ---------------------------------------------------------------------------- migrations


def test_forward_migration_runs_on_an_older_store(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_store(store_path, {"t.py::test_a": 1.0})
    set_schema_version(store_path, 0)
    monkeypatch.setitem(
        history.MIGRATIONS,
        0,
        "ALTER TABLE tests ADD COLUMN note TEXT; "
        "INSERT INTO meta(key, value) VALUES ('migrated_from', '0')",
    )

    migrated = HistoryStore.open_strict(store_path)
    try:
        assert migrated.timings()["t.py::test_a"].mean == 1.0  # the data came along
        migrated.record(results({"t.py::test_a": 2.0}))
    finally:
        migrated.close()
    assert schema_version(store_path) == str(SCHEMA_VERSION)
    db = sqlite3.connect(str(store_path))
    try:
        columns = [row[1] for row in db.execute("PRAGMA table_info(tests)")]
        marker = db.execute("SELECT value FROM meta WHERE key='migrated_from'").fetchone()
    finally:
        db.close()
    assert "note" in columns
    assert marker == ("0",)


def test_migrations_run_in_order_each_once(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_store(store_path, {"t.py::test_a": 1.0})
    set_schema_version(store_path, 0)
    monkeypatch.setattr(history, "SCHEMA_VERSION", 3)
    for version in range(3):
        monkeypatch.setitem(
            history.MIGRATIONS,
            version,
            f"INSERT INTO meta(key, value) VALUES ('step{version}', '{version}')",
        )
    HistoryStore.open_strict(store_path).close()
    HistoryStore.open_strict(store_path).close()  # already current: nothing runs again
    db = sqlite3.connect(str(store_path))
    try:
        steps = db.execute("SELECT key FROM meta WHERE key LIKE 'step%' ORDER BY key").fetchall()
    finally:
        db.close()
    assert steps == [("step0",), ("step1",), ("step2",)]
    assert schema_version(store_path) == "3"


def test_a_failing_migration_changes_nothing(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_store(store_path, {"t.py::test_a": 1.0})
    set_schema_version(store_path, 0)
    monkeypatch.setitem(
        history.MIGRATIONS, 0, "ALTER TABLE tests ADD COLUMN note TEXT; SELECT * FROM nowhere"
    )
    with pytest.raises(HistoryError):
        HistoryStore.open_strict(store_path)
    assert schema_version(store_path) == "0"
    db = sqlite3.connect(str(store_path))
    try:
        columns = [row[1] for row in db.execute("PRAGMA table_info(tests)")]
    finally:
        db.close()
    assert "note" not in columns  # the half-done step was rolled back


def test_a_newer_store_is_rejected(store_path: Path) -> None:
    make_store(store_path, {"t.py::test_a": 1.0})
    set_schema_version(store_path, SCHEMA_VERSION + 1)
    with pytest.raises(HistoryError, match="newer"):
        HistoryStore.open_strict(store_path)
    assert store_path.exists()  # strict opening never moves anything
    assert moved_aside(store_path) == []


def test_a_newer_store_is_left_as_it_is_and_skipped(store_path: Path) -> None:
    """A newer parallel_exec's store is valid, just not ours to read: a run that cannot
    use it must not move it out of that newer version's way."""
    make_store(store_path, {"t.py::test_from_the_future": 4.0})
    set_schema_version(store_path, SCHEMA_VERSION + 1)

    with pytest.raises(HistoryUnavailable, match="newer"):
        HistoryStore.open(store_path, warn=lambda message: None)
    assert moved_aside(store_path) == []
    assert schema_version(store_path) == str(SCHEMA_VERSION + 1)
    db = sqlite3.connect(str(store_path))
    try:
        assert db.execute("SELECT nodeid, mean FROM tests").fetchall() == [
            ("t.py::test_from_the_future", 4.0)
        ]
    finally:
        db.close()


@pytest.mark.parametrize("version", ["-1", "0", "not-a-number"])
def test_a_version_without_a_migration_path_is_a_history_error(
    store_path: Path, version: str
) -> None:
    """A store whose version no migration leads from is unusable, like any invalid store.

    It must be a ``HistoryError`` (so that ``open`` moves it aside and the run goes on),
    not whatever exception the missing migration happens to raise.
    """
    make_store(store_path, {"t.py::test_a": 1.0})
    set_schema_version(store_path, version)
    with pytest.raises(HistoryError):
        HistoryStore.open_strict(store_path)

    fresh, warnings = open_collecting_warnings(store_path)
    try:
        assert len(warnings) == 1, warnings
        assert len(moved_aside(store_path)) == 1
        assert_empty_and_usable(fresh)
    finally:
        fresh.close()


def test_two_processes_opening_an_old_store_migrate_it_once(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs starting at once on a store an upgrade made old: one migrates, one waits.

    Both read the version while a third connection holds the write lock, so both find
    it old; the second must see, once it gets the lock, that the work is done, instead of
    running the migration again (and, through ``open``, moving the store aside).

    The lock is released only once both have asked for it (``BEGIN IMMEDIATE``), that
    is with version 0 in hand, however slowly the threads get there.
    """
    make_store(store_path, {"t.py::test_a": 1.0})
    set_schema_version(store_path, 0)
    monkeypatch.setitem(history.MIGRATIONS, 0, "ALTER TABLE tests ADD COLUMN note TEXT")
    # However long the first waits for the second to get there, it must not give up.
    monkeypatch.setattr(history, "BUSY_TIMEOUT_SECONDS", 60.0)
    holder = sqlite3.connect(str(store_path), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    outcomes: list[str] = []
    warnings: list[str] = []
    asking = threading.Semaphore(0)
    transaction = history._transaction

    @contextlib.contextmanager
    def noted_transaction(db: sqlite3.Connection) -> Iterator[None]:
        asking.release()  # about to wait for the write lock
        with transaction(db):
            yield

    monkeypatch.setattr(history, "_transaction", noted_transaction)

    def open_once() -> None:
        try:
            HistoryStore.open(store_path, warnings.append).close()
            outcomes.append("opened")
        except Exception as exc:  # reported below, with the warnings
            outcomes.append(f"{type(exc).__name__}: {exc}")

    openers = [threading.Thread(target=open_once) for _ in range(2)]
    for opener in openers:
        opener.start()
    both_asked = all(asking.acquire(timeout=60) for _ in openers)
    holder.execute("ROLLBACK")
    holder.close()
    for opener in openers:
        opener.join(timeout=60)

    assert both_asked, f"not both openers asked for the write lock: {outcomes}"
    assert outcomes == ["opened", "opened"]
    assert warnings == []
    assert moved_aside(store_path) == []
    reopened = HistoryStore.open_strict(store_path)
    try:
        assert "t.py::test_a" in reopened.timings()
    finally:
        reopened.close()


# ---------------------------------------------------------------------------- invalid files


def garbage(path: Path) -> bytes:
    data = bytes(range(256)) * 16
    path.write_bytes(data)
    return data


def truncated_store(path: Path) -> bytes:
    make_store(path, {f"t.py::test_{i}": i / 10 for i in range(300)}, run_id="r")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data[: len(data) // 2]


def unrelated_database(path: Path) -> bytes:
    db = sqlite3.connect(str(path))
    db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
    db.execute("INSERT INTO accounts(owner) VALUES ('somebody else')")
    db.commit()
    db.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    "spoil", [garbage, truncated_store, unrelated_database], ids=lambda f: f.__name__
)
def test_an_invalid_file_is_moved_aside_with_one_warning(
    store_path: Path, spoil: Callable[[Path], bytes]
) -> None:
    store_path.parent.mkdir(parents=True)
    original = spoil(store_path)

    fresh, warnings = open_collecting_warnings(store_path)
    try:
        assert len(warnings) == 1, warnings
        assert str(store_path) in warnings[0]
        (aside,) = moved_aside(store_path)
        assert aside.name in warnings[0]
        assert_empty_and_usable(fresh)
    finally:
        fresh.close()
    if spoil is unrelated_database:
        # Still the other program's database, with its data.
        db = sqlite3.connect(str(aside))
        try:
            assert db.execute("SELECT owner FROM accounts").fetchall() == [("somebody else",)]
        finally:
            db.close()
    else:
        assert aside.read_bytes() == original


@pytest.mark.parametrize(
    "spoil", [garbage, truncated_store, unrelated_database], ids=lambda f: f.__name__
)
def test_an_invalid_file_is_an_error_when_opened_strictly(
    store_path: Path, spoil: Callable[[Path], bytes]
) -> None:
    store_path.parent.mkdir(parents=True)
    spoil(store_path)
    with pytest.raises(HistoryError):
        HistoryStore.open_strict(store_path)
    assert moved_aside(store_path) == []


def wait_for_the_start_of_a_second() -> None:
    """So that what follows (a few milliseconds of work) happens within one second."""
    time.sleep(1.0 - math.modf(time.time())[0] + 0.01)


def aside_stamp(aside: Path) -> str:
    """The second an ``.invalid-YYYYmmdd-HHMMSS-pid[-n]`` name was stamped with."""
    return aside.name.split(".invalid-", 1)[1][: len("YYYYmmdd-HHMMSS")]


def test_two_invalid_files_moved_aside_in_the_same_second_are_both_kept(
    store_path: Path,
) -> None:
    """Moved aside, never deleted: that holds for the second bad file too.

    The aside name is stamped to the second and the process id; a second bad store found
    at the same path by the same process within that second must not overwrite the first.
    On a loaded machine the two moves may still straddle a second: then they did not
    test that, and the test tries again in a fresh directory.
    """
    first, second = b"first bad store " * 64, b"second bad store " * 64
    for attempt in range(5):
        path = store_path.parent / f"attempt-{attempt}" / store_path.name
        path.parent.mkdir(parents=True)
        wait_for_the_start_of_a_second()
        path.write_bytes(first)
        HistoryStore.open(path, lambda message: None).close()
        for leftover in path.parent.glob(path.name + "*"):
            if ".invalid-" not in leftover.name:
                leftover.unlink()
        path.write_bytes(second)
        HistoryStore.open(path, lambda message: None).close()

        asides = moved_aside(path)
        kept = sorted(p.read_bytes() for p in asides)
        assert kept == sorted([first, second])
        if len({aside_stamp(aside) for aside in asides}) == 1:
            return
    pytest.fail("five times, the two moves were not within one second")


def test_a_directory_in_the_way_is_never_moved(tmp_path: Path) -> None:
    """``--history tests`` (a slip of the keyboard) must not rename the user's directory.

    A path SQLite cannot open at all is not a store with bad contents: there is nothing
    to set aside, and moving whatever is there would take the user's files with it.
    """
    directory = tmp_path / "tests"
    directory.mkdir()
    (directory / "test_mine.py").write_text("def test(): pass\n")
    warnings: list[str] = []
    with pytest.raises(HistoryError):
        HistoryStore.open(directory, warnings.append)
    assert (directory / "test_mine.py").read_text() == "def test(): pass\n"
    assert moved_aside(directory) == []


def test_an_empty_file_becomes_a_store(store_path: Path) -> None:
    store_path.parent.mkdir(parents=True)
    store_path.touch()
    fresh, warnings = open_collecting_warnings(store_path)
    try:
        assert warnings == []
        assert_empty_and_usable(fresh)
    finally:
        fresh.close()


# ---------------------------------------------------------------------------- damaged pages


def page_size_and_roots(path: Path) -> tuple[int, dict[str, int]]:
    db = sqlite3.connect(str(path))
    try:
        size = int(db.execute("PRAGMA page_size").fetchone()[0])
        roots = {str(n): int(p) for n, p in db.execute("SELECT name, rootpage FROM sqlite_master")}
    finally:
        db.close()
    return size, roots


def damage_page(path: Path, table: str) -> bytes:
    """Overwrite the root page of ``table`` with garbage, as a bad sector or a torn copy
    would: the 100-byte header (page 1) stays valid, so SQLite opens the file happily."""
    size, roots = page_size_and_roots(path)
    assert roots[table] > 1
    with path.open("r+b") as fh:
        fh.seek((roots[table] - 1) * size)
        fh.write((b"\xde\xad\xbe\xef" * size)[:size])
    return path.read_bytes()


def store_with_pages(path: Path) -> None:
    """A closed, checkpointed store whose tables span several pages each."""
    make_store(path, {f"t.py::test_{i}": i / 10 for i in range(300)}, run_id="r")


@pytest.mark.parametrize("table", ["tests", "runs"])
def test_a_damaged_page_is_found_at_open_and_moved_aside(store_path: Path, table: str) -> None:
    """A valid header with one page overwritten used to open fine and then fail the first
    query that read the page (planning for ``tests``, the final write for ``runs``)."""
    store_with_pages(store_path)
    damaged = damage_page(store_path, table)

    fresh, warnings = open_collecting_warnings(store_path)
    try:
        assert len(warnings) == 1, warnings
        assert str(store_path) in warnings[0]
        assert "not a valid store" in warnings[0]
        (aside,) = moved_aside(store_path)
        assert aside.name in warnings[0]
        assert aside.read_bytes() == damaged  # moved, never changed
        assert_empty_and_usable(fresh)
    finally:
        fresh.close()


def test_a_damaged_page_is_an_error_when_opened_strictly(store_path: Path) -> None:
    store_with_pages(store_path)
    damaged = damage_page(store_path, "tests")
    with pytest.raises(HistoryError, match=r"damaged|malformed"):
        HistoryStore.open_strict(store_path)
    assert moved_aside(store_path) == []
    assert store_path.read_bytes() == damaged


def damage_behind_an_open_store(path: Path, table: str) -> None:
    """Damage ``table`` after a store was opened (its check passed), then let another
    connection commit, so that the open store reads its pages from the file again."""
    damage_page(path, table)
    other = sqlite3.connect(str(path), isolation_level=None)
    try:
        other.execute("INSERT INTO meta(key, value) VALUES ('other', 'run')")
    finally:
        other.close()


def test_a_write_that_finds_damage_is_a_history_error_and_moves_the_store_aside(
    store_path: Path,
) -> None:
    """Damage ``quick_check`` could not see at open (it came later) fails the write as a
    ``HistoryError`` (a warning for the run), never as sqlite3's ``DatabaseError``."""
    store_with_pages(store_path)
    opened, warnings = open_collecting_warnings(store_path)
    try:
        assert warnings == []
        damage_behind_an_open_store(store_path, "runs")
        with pytest.raises(HistoryError, match="malformed") as excinfo:
            opened.record(results({"t.py::test_1": 1.0}), run={"late": True}, run_id="late")
    finally:
        opened.close()
    (aside,) = moved_aside(store_path)
    assert aside.name in str(excinfo.value)
    assert not store_path.exists()  # the next run starts an empty history
    reopened, warnings = open_collecting_warnings(store_path)
    try:
        assert warnings == []
        assert_empty_and_usable(reopened)
    finally:
        reopened.close()


def test_reads_and_strict_writes_that_find_damage_are_history_errors(store_path: Path) -> None:
    """Reading (planning, ``history show``) and the CLI's merges say ``HistoryError``; a
    strictly opened store is never moved."""
    store_with_pages(store_path)
    opened = HistoryStore.open_strict(store_path)
    try:
        damage_behind_an_open_store(store_path, "tests")
        with pytest.raises(HistoryError, match="malformed"):
            opened.timings()
        with pytest.raises(HistoryError, match="malformed"):
            opened.slowest()
        with pytest.raises(HistoryError, match="malformed"):
            opened.merge_timings([TestTiming("t.py::test_1", 1, 1.0, 0.0, 1.0, "passed", 1.0)])
        with pytest.raises(HistoryError, match="malformed"):
            opened.record(results({"t.py::test_1": 1.0}))
    finally:
        opened.close()
    assert moved_aside(store_path) == []


# ---------------------------------------------------------------------------- read-only


def store_with_wal(path: Path, leftovers: tuple[str, ...]) -> None:
    """A store as a copied cache may hold it: the file, plus the ``-wal`` (and ``-shm``)
    of a run that was still open when the copy was taken."""
    store_with_pages(path)
    if not leftovers:
        return
    source = path.with_name("source.sqlite")
    path.rename(source)
    db = sqlite3.connect(str(source), isolation_level=None)
    try:
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute("UPDATE tests SET runs = runs + 1")  # in the -wal only
        for suffix in ("", *leftovers):
            Path(str(path) + suffix).write_bytes(Path(str(source) + suffix).read_bytes())
    finally:
        db.close()
    source.unlink()


@pytest.mark.parametrize(
    "leftovers", [(), ("-wal",), ("-wal", "-shm")], ids=["checkpointed", "wal", "wal-and-shm"]
)
def test_a_read_only_store_is_read_and_never_written(
    store_path: Path, leftovers: tuple[str, ...]
) -> None:
    """Readable timings still plan: the store opens read-only (one warning that says it
    is not written, and nothing about moving it), and a write is ``HistoryUnavailable``.

    Without a ``-shm`` SQLite cannot open a WAL store on a read-only file system even
    with ``mode=ro``; it is then read ``immutable`` (as of its last checkpoint).
    """
    store_path.parent.mkdir(parents=True)
    store_with_wal(store_path, leftovers)
    before = files_of(store_path.parent)

    with read_only(store_path.parent) as directory:
        path = directory / store_path.name
        opened, warnings = open_collecting_warnings(path)
        try:
            assert opened.read_only
            assert len(warnings) == 1, warnings
            assert str(path) in warnings[0]
            assert "read-only" in warnings[0]
            assert "moved" not in warnings[0]
            timings = opened.timings()
            assert set(timings) == {f"t.py::test_{i}" for i in range(300)}
            assert timings["t.py::test_7"].mean == pytest.approx(0.7)
            assert opened.runs() == [{"marker": "r"}]
            with pytest.raises(HistoryUnavailable, match="read-only"):
                opened.record(results({"t.py::test_1": 5.0}), run={}, run_id="never")
            with pytest.raises(HistoryUnavailable, match="read-only"):
                opened.merge_runs([("never", 1.0, {})])
        finally:
            opened.close()

    assert files_of(store_path.parent) == before


def test_a_read_only_store_is_read_when_opened_strictly_for_reading(store_path: Path) -> None:
    """``parallel-exec history show`` and ``export`` read a read-only store; ``import``
    and ``merge`` (``write=True``) cannot write it and say so."""
    store_path.parent.mkdir(parents=True)
    store_with_pages(store_path)
    with read_only(store_path.parent) as directory:
        path = directory / store_path.name
        with pytest.raises(HistoryUnavailable, match="read-only"):
            HistoryStore.open_strict(path)
        opened = HistoryStore.open_strict(path, write=False)
        try:
            assert len(opened.timings()) == 300
        finally:
            opened.close()


@pytest.mark.parametrize("spoil", ["damaged page", "garbage"])
def test_an_invalid_read_only_store_is_skipped_and_left_as_it_is(
    store_path: Path, spoil: str
) -> None:
    """It cannot be moved aside: ``HistoryUnavailable`` (the run warns once and goes on
    without a history), and no warning about moving it."""
    store_path.parent.mkdir(parents=True)
    if spoil == "garbage":
        garbage(store_path)
    else:
        store_with_pages(store_path)
        damage_page(store_path, "tests")
    before = files_of(store_path.parent)

    with read_only(store_path.parent) as directory:
        warnings: list[str] = []
        with pytest.raises(HistoryUnavailable, match="not a valid store") as excinfo:
            HistoryStore.open(directory / store_path.name, warnings.append)
        assert "left as it is" in str(excinfo.value)
        assert warnings == []

    assert files_of(store_path.parent) == before


def test_no_store_in_a_read_only_directory_is_skipped(store_path: Path) -> None:
    store_path.parent.mkdir(parents=True)
    (store_path.parent / "other-file").write_text("not ours")
    with (
        read_only(store_path.parent) as directory,
        pytest.raises(HistoryUnavailable, match="read-only"),
    ):
        HistoryStore.open(directory / store_path.name, lambda message: None)
    assert not store_path.exists()


# ---------------------------------------------------------------------------- locks


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    """The busy timeout is read when a store is opened (connect timeout and pragma)."""
    monkeypatch.setattr(history, "BUSY_TIMEOUT_SECONDS", SHORT_BUSY_TIMEOUT)
    return SHORT_BUSY_TIMEOUT


def hold_exclusive_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(str(path), isolation_level=None, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_record_on_a_locked_store_fails_after_the_busy_timeout(
    store_path: Path, short_busy_timeout: float
) -> None:
    make_store(store_path, {"t.py::test_a": 1.0})
    store = HistoryStore.open_strict(store_path)
    holder = hold_exclusive_lock(store_path)
    try:
        started = time.monotonic()
        with pytest.raises(HistoryError, match="locked") as excinfo:
            store.record(results({"t.py::test_a": 2.0}), run={"x": 1}, run_id="blocked")
        waited = time.monotonic() - started
        assert str(store_path) in str(excinfo.value)
        assert short_busy_timeout * 0.8 <= waited < short_busy_timeout + 5.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Nothing half-written, and the store works again once the lock is gone.
    assert store.timings()["t.py::test_a"].runs == 1
    assert store.runs() == []
    store.record(results({"t.py::test_a": 2.0}))
    assert store.timings()["t.py::test_a"].runs == 2
    store.close()


def test_open_reads_a_store_while_another_connection_writes(
    store_path: Path, short_busy_timeout: float
) -> None:
    """WAL mode: a run can plan from the history while another run holds the write lock."""
    make_store(store_path, {"t.py::test_a": 1.0})
    holder = hold_exclusive_lock(store_path)
    try:
        opened, warnings = open_collecting_warnings(store_path)
        try:
            assert warnings == []
            assert opened.timings()["t.py::test_a"].mean == 1.0
        finally:
            opened.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_open_on_a_locked_store_raises_and_never_moves_it(
    store_path: Path, short_busy_timeout: float
) -> None:
    """A store that cannot even be read because of a lock is busy, not invalid.

    A rollback-journal database locked exclusively cannot be read at all; ``open`` must
    say so (``HistoryError``) without a warning about an invalid store and without moving
    a perfectly good file aside.
    """
    make_store(store_path, {"t.py::test_a": 1.0})
    db = sqlite3.connect(str(store_path), isolation_level=None)
    assert db.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    db.close()
    holder = hold_exclusive_lock(store_path)
    warnings: list[str] = []
    try:
        with pytest.raises(HistoryError, match="locked"):
            HistoryStore.open(store_path, warnings.append)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert warnings == []
    assert moved_aside(store_path) == []
    reopened = HistoryStore.open_strict(store_path)
    try:
        assert reopened.timings()["t.py::test_a"].mean == 1.0
    finally:
        reopened.close()


# ---------------------------------------------------------------------------- concurrency

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from parallel_exec.history.store import HistoryStore, TestResult

    path, tag, first, count, rounds, start_at = sys.argv[1:7]
    while time.time() < float(start_at):
        pass
    for round_ in range(int(rounds)):
        store = HistoryStore.open_strict(Path(path))
        rows = [
            TestResult(f"t.py::test_{i}", 0.5, "passed")
            for i in range(int(first), int(first) + int(count))
        ]
        store.record(rows, run={"tag": tag, "round": round_}, run_id=f"{tag}-{round_}")
        store.close()
    """
)


def run_writers_at_once(path: Path, writers: Sequence[tuple[str, int, int]], rounds: int) -> None:
    """Start one process per ``(tag, first, count)``; all begin writing at the same instant."""
    start_at = time.time() + 1.0
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), tag]
            + [str(value) for value in (first, count, rounds, start_at)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag, first, count in writers
    ]
    failures = []
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        if process.returncode:
            failures.append(stderr)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("exists", [True, False], ids=["existing-store", "new-store"])
def test_concurrent_writers_lose_nothing(store_path: Path, exists: bool) -> None:
    """Two processes record at once, tests 0-29 and 15-44 (15-29 in both), 10 runs each."""
    store_path.parent.mkdir(parents=True)
    if exists:
        HistoryStore.open_strict(store_path).close()
    rounds = 10
    run_writers_at_once(store_path, [("a", 0, 30), ("b", 15, 30)], rounds)

    store = HistoryStore.open_strict(store_path)
    try:
        runs = {nodeid: t.runs for nodeid, t in store.timings().items()}
        recorded = [record for _, _, record in store.all_runs()]
    finally:
        store.close()
    expected = {f"t.py::test_{i}": rounds * (2 if 15 <= i < 30 else 1) for i in range(45)}
    assert runs == expected
    assert sorted((r["tag"], r["round"]) for r in recorded) == sorted(
        (tag, n) for tag in "ab" for n in range(rounds)
    )


# ---------------------------------------------------------------------------- merge


def timing(nodeid: str, mean: float, seen: float, runs: int = 1, flaky: int = 0) -> TestTiming:
    return TestTiming(nodeid, runs, mean, mean / 10, mean, f"outcome@{seen}", seen, flaky)


def test_merge_timings_newer_row_wins(store: HistoryStore) -> None:
    store.merge_timings(
        [
            timing("t.py::older_elsewhere", 1.0, seen=200.0, runs=5, flaky=1),
            timing("t.py::newer_elsewhere", 1.0, seen=100.0, runs=2, flaky=3),
            timing("t.py::same_age", 1.0, seen=150.0, runs=4),
        ]
    )
    store.merge_timings(
        [
            timing("t.py::older_elsewhere", 9.0, seen=50.0, runs=9, flaky=0),
            timing("t.py::newer_elsewhere", 9.0, seen=300.0, runs=1, flaky=1),
            timing("t.py::same_age", 9.0, seen=150.0, runs=1),
            timing("t.py::only_elsewhere", 7.0, seen=10.0, runs=3, flaky=2),
        ]
    )
    merged = store.timings()
    kept = merged["t.py::older_elsewhere"]
    assert (kept.mean, kept.var, kept.last_duration, kept.last_outcome, kept.last_seen) == (
        1.0,
        0.1,
        1.0,
        "outcome@200.0",
        200.0,
    )
    taken = merged["t.py::newer_elsewhere"]
    assert (taken.mean, taken.var, taken.last_duration, taken.last_outcome, taken.last_seen) == (
        9.0,
        0.9,
        9.0,
        "outcome@300.0",
        300.0,
    )
    assert merged["t.py::same_age"].mean == 1.0  # a tie keeps what is there
    assert merged["t.py::only_elsewhere"] == timing("t.py::only_elsewhere", 7.0, 10.0, 3, 2)
    # Counters never go down.
    assert (kept.runs, kept.flaky_count) == (9, 1)
    assert (taken.runs, taken.flaky_count) == (2, 3)


def test_merge_runs_keeps_existing_records(store: HistoryStore) -> None:
    store.record([], run={"v": "mine"}, run_id="r1", now=1.0)
    store.merge_runs([("r1", 5.0, {"v": "theirs"}), ("r2", 2.0, {"v": "new"})])
    assert store.all_runs() == [("r1", 1.0, {"v": "mine"}), ("r2", 2.0, {"v": "new"})]


def test_merge_on_a_locked_store_is_a_history_error(
    store_path: Path, short_busy_timeout: float
) -> None:
    """Like ``record``: callers (the CLI) handle ``HistoryError``, not sqlite3's errors."""
    store = HistoryStore.open_strict(store_path)
    holder = hold_exclusive_lock(store_path)
    try:
        with pytest.raises(HistoryError):
            store.merge_timings([timing("t.py::x", 1.0, 1.0)])
        with pytest.raises(HistoryError):
            store.merge_runs([("r", 1.0, {})])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()


# ---------------------------------------------------------------------------- estimates


def known(**means: float) -> dict[str, TestTiming]:
    """``known(a__test_1=2.0)`` -> the timing of ``a.py::test_1`` with mean 2.0."""
    found = {}
    for key, mean in means.items():
        file, name = key.split("__")
        nodeid = f"{file}.py::{name}"
        found[nodeid] = TestTiming(nodeid, 3, mean, 0.0, mean, "passed", 1.0)
    return found


def test_estimates_known_tests_by_their_mean() -> None:
    history_rows = known(a__t1=2.0, a__t2=4.0)
    assert estimate_durations(["a.py::t1", "a.py::t2"], history_rows) == {
        "a.py::t1": 2.0,
        "a.py::t2": 4.0,
    }


def test_estimates_unknown_tests_from_their_file_then_the_suite_then_the_default() -> None:
    history_rows = known(a__t1=1.0, a__t2=2.0, a__t3=6.0, b__t1=10.0, b__t2=20.0, z__gone=999.0)
    nodeids = ["a.py::t1", "a.py::t2", "a.py::t3", "a.py::new", "b.py::t1", "b.py::t2"]
    nodeids += ["b.py::new", "c.py::new", "c.py::Class::new"]
    estimates = estimate_durations(nodeids, history_rows)
    assert estimates["a.py::new"] == 2.0  # median of 1, 2, 6
    assert estimates["b.py::new"] == 15.0  # median of 10, 20
    # c.py is unknown: the median of every known test of this run (1, 2, 6, 10, 20);
    # z.py::gone is not part of the run and does not count.
    assert estimates["c.py::new"] == 6.0
    assert estimates["c.py::Class::new"] == 6.0
    assert set(estimates) == set(nodeids)


def test_estimates_without_any_history_use_the_default() -> None:
    assert estimate_durations(["a.py::t1", "b.py::t2"], {}) == {
        "a.py::t1": DEFAULT_ESTIMATE,
        "b.py::t2": DEFAULT_ESTIMATE,
    }
    assert estimate_durations(["a.py::t1"], {}, default=0.7) == {"a.py::t1": 0.7}
    # Known tests outside the run do not make a suite median.
    assert estimate_durations(["a.py::t1"], known(b__t9=5.0)) == {"a.py::t1": DEFAULT_ESTIMATE}


def test_estimates_from_a_real_store(store: HistoryStore) -> None:
    store.record(results({"a.py::t1": 1.0, "a.py::t2": 3.0}))
    nodeids = ["a.py::t1", "a.py::t2", "a.py::t3"]
    assert estimate_durations(nodeids, store.timings(nodeids)) == {
        "a.py::t1": 1.0,
        "a.py::t2": 3.0,
        "a.py::t3": 2.0,
    }


def test_export_shaped_rows_are_json_round_trippable(store: HistoryStore) -> None:
    """The CLI exports ``vars(TestTiming)``; every field must survive JSON unchanged."""
    store.record([TestResult("t.py::test_ü[x]", 0.25, "failed", flaky=True)], now=5.0)
    (row,) = store.timings().values()
    assert TestTiming(**json.loads(json.dumps(vars(row)))) == row
