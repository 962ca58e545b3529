"""The ``parallel-exec`` console script, called in-process (``cli.main`` is a function).

It works on real history files in ``tmp_path``.  Its promise to a user: every command
prints what it says, and every failure is one line on stderr with exit code 2, never a
traceback (it is run in CI scripts, where a traceback hides the actual problem).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parallel_exec._version import __version__
from parallel_exec.history import cli
from parallel_exec.history import store as history
from parallel_exec.history.learning import LearningOutcome, RanTest, summarize
from parallel_exec.history.store import HistoryStore, TestResult, TestTiming


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default ``--path`` is relative: every test runs in its own directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def outcome_record(run_id: str, strategy: str = "time") -> dict[str, Any]:
    """A real learning-outcome record, as a run stores it."""
    tests = [RanTest("a.py::t1", "gw0", 2.0, "passed"), RanTest("a.py::t2", "gw1", 1.0, "failed")]
    return summarize(
        version=__version__,
        run_id=run_id,
        strategy=strategy,
        workers=2,
        tests=tests,
        wall_time=2.5,
        not_run=0,
        worker_failures=0,
        execution_failed=False,
    ).model_dump(mode="json")


def make_store(path: Path, rows: dict[str, float], now: float, run_id: str | None = None) -> None:
    store = HistoryStore.open_strict(path)
    try:
        store.record(
            [TestResult(nodeid, duration, "passed") for nodeid, duration in rows.items()],
            run=outcome_record(run_id) if run_id else None,
            run_id=run_id,
            now=now,
        )
    finally:
        store.close()


def read_store(path: Path) -> tuple[dict[str, TestTiming], list[tuple[str, float, dict[str, Any]]]]:
    store = HistoryStore.open_strict(path)
    try:
        return store.timings(), store.all_runs()
    finally:
        store.close()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, out: str, err: str, *words: str) -> None:
    """Exit code 2 and a single ``parallel-exec: error: ...`` line naming ``words``."""
    assert code == 2, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("parallel-exec: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, err)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "store.sqlite"
    make_store(path, {"a.py::t1": 2.0, "a.py::t2": 0.5, "b.py::slow": 9.0}, now=100.0, run_id="r1")
    make_store(path, {"a.py::t1": 4.0}, now=200.0, run_id="r2")
    return path


# ---------------------------------------------------------------------------- basics


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out == f"parallel-exec {__version__}\n"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys)
    assert code == 0
    assert "history" in out
    assert "schema" in out


def test_schema_outcome(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "schema", "outcome")
    assert (code, err) == (0, "")
    schema = json.loads(out)
    assert schema == json.loads(json.dumps(LearningOutcome.model_json_schema()))
    assert schema["type"] == "object"
    assert {"speedup", "efficiency", "balance", "stragglers", "reward"} <= set(schema["required"])


def test_schema_report(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the ``--report-json`` schema, byte for byte the committed copy."""
    from parallel_exec.reporting.writers.json_report import schema_text

    code, out, err = run_cli(capsys, "schema", "report")
    assert (code, err) == (0, "")
    assert out == schema_text()
    assert json.loads(out)["properties"]["schema_version"]["const"] == 1


# ---------------------------------------------------------------------------- show


def test_history_show(capsys: pytest.CaptureFixture[str], store_path: Path) -> None:
    code, out, err = run_cli(capsys, "history", "--path", str(store_path), "show")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"history: {store_path}"
    assert lines[1] == "3 tests known"
    table = [line for line in lines if line.endswith(("a.py::t1", "a.py::t2", "b.py::slow"))]
    # Slowest first: b.py::slow 9 s, a.py::t1 2 -> 4 s (mean 2 + 0.3 * 2 = 2.6), a.py::t2.
    assert [line.split()[-1] for line in table] == ["b.py::slow", "a.py::t1", "a.py::t2"]
    mean, stdev, runs, last = table[1].split()[:4]
    assert (mean, runs, last) == ("2.600", "2", "passed")
    assert float(stdev) == pytest.approx((0.7 * 0.3 * 4) ** 0.5, abs=1e-3)
    runs_section = out.split("recent runs (newest first):\n", 1)[1].splitlines()
    assert [line.split()[0] for line in runs_section] == ["r2", "r1"]
    assert "time" in runs_section[0]
    assert "workers=2 tests=2" in runs_section[0]
    assert "reward=" in runs_section[0]


@pytest.mark.parametrize("action", ["show", "export"])
def test_history_path_after_the_action(
    capsys: pytest.CaptureFixture[str], store_path: Path, action: str
) -> None:
    """``history show --path X`` reads X, as ``history --path X show`` does."""
    before = run_cli(capsys, "history", "--path", str(store_path), action)
    after = run_cli(capsys, "history", action, "--path", str(store_path))
    assert after == before
    assert before[0] == 0


def test_history_show_limit(capsys: pytest.CaptureFixture[str], store_path: Path) -> None:
    code, out, _ = run_cli(capsys, "history", "--path", str(store_path), "show", "--limit", "1")
    assert code == 0
    assert "b.py::slow" in out
    assert "a.py::t2" not in out


def test_history_show_uses_the_default_path_of_a_run_started_here(
    capsys: pytest.CaptureFixture[str], in_tmp_path: Path
) -> None:
    make_store(in_tmp_path / cli.DEFAULT_HISTORY, {"a.py::t": 1.0}, now=1.0)
    code, out, _ = run_cli(capsys, "history", "show")
    assert code == 0
    assert "1 tests known" in out
    assert "a.py::t" in out


# ---------------------------------------------------------------------------- export


def test_history_export_shape(capsys: pytest.CaptureFixture[str], store_path: Path) -> None:
    code, out, err = run_cli(capsys, "history", "--path", str(store_path), "export")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert set(data) == {"format", "schema_version", "tests", "runs"}
    assert (data["format"], data["schema_version"]) == ("parallel_exec-history", 1)
    assert [t["nodeid"] for t in data["tests"]] == ["a.py::t1", "a.py::t2", "b.py::slow"]
    assert set(data["tests"][0]) == {
        "nodeid",
        "runs",
        "mean",
        "var",
        "last_duration",
        "last_outcome",
        "last_seen",
        "flaky_count",
    }
    assert data["tests"][0]["runs"] == 2
    assert data["tests"][0]["last_seen"] == 200.0
    assert [(r["run_id"], r["finished_at"]) for r in data["runs"]] == [("r1", 100.0), ("r2", 200.0)]
    LearningOutcome.model_validate(data["runs"][0]["record"])


def test_history_export_to_a_file(
    capsys: pytest.CaptureFixture[str], store_path: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "history.json"
    code, out, _ = run_cli(
        capsys, "history", "--path", str(store_path), "export", "-o", str(target)
    )
    assert (code, out) == (0, "")
    assert json.loads(target.read_text())["format"] == "parallel_exec-history"
    assert [p.name for p in target.parent.iterdir()] == ["history.json"]  # no temp file left


# ---------------------------------------------------------------------------- import


def export_of(capsys: pytest.CaptureFixture[str], path: Path, target: Path) -> Path:
    code, _, _ = run_cli(capsys, "history", "--path", str(path), "export", "-o", str(target))
    assert code == 0
    return target


def test_import_an_export_round_trips(
    capsys: pytest.CaptureFixture[str], store_path: Path, tmp_path: Path
) -> None:
    exported = export_of(capsys, store_path, tmp_path / "export.json")
    fresh = tmp_path / "elsewhere" / "new.sqlite"
    code, out, err = run_cli(capsys, "history", "--path", str(fresh), "import", str(exported))
    assert (code, err) == (0, "")
    assert out.strip() == f"imported 3 tests and 2 runs into {fresh}"
    assert read_store(fresh) == read_store(store_path)


def test_import_pytest_split_durations(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    durations = tmp_path / ".test_durations"
    durations.write_text(json.dumps({"a.py::t1": 1.25, "a.py::t2": 3, "b.py::TestX::t": 0.0}))
    target = tmp_path / "store.sqlite"
    code, out, err = run_cli(capsys, "history", "--path", str(target), "import", str(durations))
    assert (code, err) == (0, "")
    assert out.strip() == f"imported 3 tests and 0 runs into {target}"
    timings, runs = read_store(target)
    assert {n: (t.mean, t.runs, t.var, t.last_outcome) for n, t in timings.items()} == {
        "a.py::t1": (1.25, 1, 0.0, "unknown"),
        "a.py::t2": (3.0, 1, 0.0, "unknown"),
        "b.py::TestX::t": (0.0, 1, 0.0, "unknown"),
    }
    assert runs == []


def test_import_pytest_split_with_explicit_format(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    durations = tmp_path / "durations.json"
    durations.write_text(json.dumps({"a.py::t1": 2.0}))
    target = tmp_path / "store.sqlite"
    code, _, _ = run_cli(
        capsys,
        "history",
        "--path",
        str(target),
        "import",
        str(durations),
        "--format",
        "pytest-split",
    )
    assert code == 0
    assert read_store(target)[0]["a.py::t1"].mean == 2.0


def test_import_pytest_split_legacy_list_of_pairs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """pytest-split before its dict format wrote ``[[nodeid, seconds], ...]``.

    pytest-split itself still reads such files ("backwards compatibility after we
    switched from saving durations in a list-of-lists to a dict format"), and teams
    still have them checked in; importing one must work too.
    """
    durations = tmp_path / ".test_durations"
    durations.write_text(json.dumps([["a.py::t1", 1.5], ["a.py::t2", 0.5]]))
    target = tmp_path / "store.sqlite"
    code, _, err = run_cli(capsys, "history", "--path", str(target), "import", str(durations))
    assert (code, err) == (0, "")
    assert {n: t.mean for n, t in read_store(target)[0].items()} == {
        "a.py::t1": 1.5,
        "a.py::t2": 0.5,
    }


def test_import_merges_into_an_existing_store_newest_wins(
    capsys: pytest.CaptureFixture[str], store_path: Path, tmp_path: Path
) -> None:
    durations = tmp_path / ".test_durations"  # stamped "now": newer than the store's rows
    durations.write_text(json.dumps({"a.py::t1": 7.0, "c.py::new": 1.0}))
    code, _, _ = run_cli(capsys, "history", "--path", str(store_path), "import", str(durations))
    assert code == 0
    timings, runs = read_store(store_path)
    assert timings["a.py::t1"].mean == 7.0
    assert timings["a.py::t1"].runs == 2  # counters never go down
    assert timings["b.py::slow"].mean == 9.0  # untouched
    assert timings["c.py::new"].mean == 1.0
    assert [r[0] for r in runs] == ["r1", "r2"]


# ---------------------------------------------------------------------------- merge


def test_merge_two_stores_and_an_export(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shard_a, shard_b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    make_store(shard_a, {"a.py::t1": 1.0, "shared.py::t": 5.0}, now=100.0, run_id="run-a")
    make_store(shard_b, {"b.py::t1": 2.0, "shared.py::t": 6.0}, now=300.0, run_id="run-b")
    shard_c_store = tmp_path / "c.sqlite"
    make_store(shard_c_store, {"c.py::t1": 3.0, "shared.py::t": 7.0}, now=200.0, run_id="run-c")
    shard_c = export_of(capsys, shard_c_store, tmp_path / "c.json")

    merged = tmp_path / "merged" / "history.sqlite"
    code, out, err = run_cli(
        capsys, "history", "--path", str(merged), "merge", str(shard_a), str(shard_b), str(shard_c)
    )
    assert (code, err) == (0, "")
    assert out.strip() == f"merged 3 sources (6 test rows) into {merged}"
    timings, runs = read_store(merged)
    assert {n: t.mean for n, t in timings.items()} == {
        "a.py::t1": 1.0,
        "b.py::t1": 2.0,
        "c.py::t1": 3.0,
        "shared.py::t": 6.0,  # shard b saw it last (t=300)
    }
    assert timings["shared.py::t"].last_seen == 300.0
    assert [r[0] for r in runs] == ["run-a", "run-c", "run-b"]


def test_merge_leaves_its_sources_alone(
    capsys: pytest.CaptureFixture[str], store_path: Path, tmp_path: Path
) -> None:
    before = read_store(store_path)
    code, _, _ = run_cli(
        capsys, "history", "--path", str(tmp_path / "m.sqlite"), "merge", str(store_path)
    )
    assert code == 0
    assert read_store(store_path) == before


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("action", ["show", "export"])
def test_missing_store(capsys: pytest.CaptureFixture[str], tmp_path: Path, action: str) -> None:
    missing = tmp_path / "nowhere.sqlite"
    assert_one_line_error(*run_cli(capsys, "history", "--path", str(missing), action), "nowhere")
    assert not missing.exists()  # reading never creates


@pytest.mark.parametrize("action", ["show", "export"])
def test_garbage_store(capsys: pytest.CaptureFixture[str], tmp_path: Path, action: str) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(bytes(range(256)) * 8)
    assert_one_line_error(*run_cli(capsys, "history", "--path", str(garbage), action), "garbage")
    assert garbage.read_bytes() == bytes(range(256)) * 8  # the CLI never moves a file aside


def test_newer_store(capsys: pytest.CaptureFixture[str], store_path: Path) -> None:
    db = sqlite3.connect(str(store_path))
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    assert_one_line_error(*run_cli(capsys, "history", "--path", str(store_path), "show"), "newer")


def test_garbage_as_import_target(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "target.sqlite"
    target.write_bytes(b"not a database at all" * 50)
    durations = tmp_path / ".test_durations"
    durations.write_text(json.dumps({"a.py::t": 1.0}))
    assert_one_line_error(
        *run_cli(capsys, "history", "--path", str(target), "import", str(durations)), "target"
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{not json", ("not JSON",)),
        (b"\xff\xfe\x00garbage\x80", ("cannot read",)),
        (b"", ("not JSON",)),
        (b'"just a string"', ("not a",)),
        (b'{"a.py::t": "fast"}', ("pytest-split",)),
        (b'{"format": "parallel_exec-history", "tests": [{"nodeid": "x"}]}', ("malformed",)),
        (b'{"format": "parallel_exec-history", "runs": [{"run_id": "x"}]}', ("malformed",)),
    ],
    ids=["bad-json", "binary", "empty", "string", "bad-durations", "bad-test-row", "bad-run"],
)
def test_bad_import_source(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, words: tuple[str, ...]
) -> None:
    source = tmp_path / "source.json"
    source.write_bytes(content)
    target = tmp_path / "target.sqlite"
    code, out, err = run_cli(capsys, "history", "--path", str(target), "import", str(source))
    assert_one_line_error(code, out, err, "source.json", *words)
    assert not target.exists()  # nothing was created for a failed import


def test_missing_import_source(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_cli(
        capsys, "history", "--path", str(tmp_path / "t.sqlite"), "import", "absent.json"
    )
    assert_one_line_error(code, out, err, "absent.json")


def test_merge_with_a_bad_source_merges_nothing(
    capsys: pytest.CaptureFixture[str], store_path: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "shard.sqlite"
    garbage.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    target = tmp_path / "merged.sqlite"
    code, out, err = run_cli(
        capsys, "history", "--path", str(target), "merge", str(store_path), str(garbage)
    )
    assert_one_line_error(code, out, err, "shard.sqlite")
    assert not target.exists()


@pytest.fixture
def locked_store(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``store_path`` while another connection holds its write lock (a run finishing)."""
    monkeypatch.setattr(history, "BUSY_TIMEOUT_SECONDS", 0.2)
    holder = sqlite3.connect(str(store_path), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    yield store_path
    holder.execute("ROLLBACK")
    holder.close()


def test_import_into_a_locked_store(
    capsys: pytest.CaptureFixture[str], locked_store: Path, tmp_path: Path
) -> None:
    durations = tmp_path / ".test_durations"
    durations.write_text(json.dumps({"a.py::t": 1.0}))
    code, out, err = run_cli(
        capsys, "history", "--path", str(locked_store), "import", str(durations)
    )
    assert_one_line_error(code, out, err, "locked")


def test_show_on_a_locked_store_still_reads(
    capsys: pytest.CaptureFixture[str], locked_store: Path
) -> None:
    code, out, _ = run_cli(capsys, "history", "--path", str(locked_store), "show")
    assert code == 0
    assert "3 tests known" in out
