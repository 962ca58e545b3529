"""Option parsers, worker-count resolution and the ini naming rule."""

from __future__ import annotations

import os

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parallel_exec.errors import OptionError, ParallelExecError
from parallel_exec.settings import (
    DIST_ALIASES,
    MAX_WORKERS,
    OPTIONS,
    OptionSpec,
    Settings,
    WorkerCount,
    parse_dist,
    parse_non_negative_int,
    parse_numprocesses,
    parse_seconds,
    parse_shard,
    parse_size,
    parse_slow_after,
)

# ---------------------------------------------------------------------------- -n


@pytest.mark.parametrize("count", range(MAX_WORKERS + 1))
def test_numprocesses_accepts_every_count_up_to_the_maximum(count: int) -> None:
    parsed = parse_numprocesses(str(count))
    assert parsed.fixed == count
    assert not parsed.is_auto
    assert parsed.resolve() == count


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("auto", "auto"),
        ("logical", "logical"),
        ("AUTO", "auto"),
        ("  Logical ", "logical"),
        ("\tauto\n", "auto"),
    ],
)
def test_numprocesses_rules_ignore_case_and_space(text: str, spec: str) -> None:
    parsed = parse_numprocesses(text)
    assert parsed == WorkerCount(spec=spec)
    assert parsed.is_auto
    assert parsed.fixed is None


def test_numprocesses_number_with_space() -> None:
    assert parse_numprocesses(" 4 ").fixed == 4


@pytest.mark.parametrize("text", ["17", "32", "100"])
def test_numprocesses_above_the_maximum_is_capped_and_remembered(text: str) -> None:
    """An xdist configuration's ``-n 32`` runs the pool's maximum, and says so."""
    parsed = parse_numprocesses(text)
    assert (parsed.fixed, parsed.asked, parsed.resolve()) == (MAX_WORKERS, int(text), MAX_WORKERS)


def test_numprocesses_negative_names_the_range() -> None:
    with pytest.raises(OptionError) as excinfo:
        parse_numprocesses("-1")
    assert f"0-{MAX_WORKERS}" in str(excinfo.value)


@pytest.mark.parametrize("count", [0, 3, 16, 17, 40])
def test_auto_resolved_to_a_count_is_capped(count: int) -> None:
    resolved = WorkerCount("auto").resolved_to(count)
    assert resolved.is_auto
    assert resolved.resolve() == min(count, MAX_WORKERS)
    assert resolved.asked == (count if count > MAX_WORKERS else None)


@pytest.mark.parametrize("text", ["", "many", "2.5", "four", "auto2", "0x4"])
def test_numprocesses_garbage_explains_what_is_expected(text: str) -> None:
    with pytest.raises(OptionError) as excinfo:
        parse_numprocesses(text)
    message = str(excinfo.value)
    assert repr(text) in message
    assert "'auto'" in message
    assert "'logical'" in message
    assert f"0-{MAX_WORKERS}" in message


def test_option_error_is_a_parallel_exec_error() -> None:
    with pytest.raises(ParallelExecError):
        parse_numprocesses("nope")


@settings(max_examples=100, deadline=None)
@given(st.integers())
def test_numprocesses_accepts_every_whole_number(count: int) -> None:
    if count < 0:
        with pytest.raises(OptionError):
            parse_numprocesses(str(count))
    else:
        assert parse_numprocesses(str(count)).resolve() == min(count, MAX_WORKERS)


@pytest.mark.parametrize("spec", ["auto", "logical"])
def test_resolved_rules_stay_within_one_to_the_maximum(spec: str) -> None:
    assert 1 <= parse_numprocesses(spec).resolve() <= MAX_WORKERS


def test_auto_never_exceeds_the_affinity_mask() -> None:
    assert parse_numprocesses("auto").resolve() <= len(os.sched_getaffinity(0))


def test_logical_counts_the_machine() -> None:
    machine = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    assert parse_numprocesses("logical").resolve() == min(MAX_WORKERS, machine)


# ---------------------------------------------------------------------------- --dist


@pytest.mark.parametrize(
    ("text", "parsed", "strategy"),
    [
        ("auto", "auto", "auto"),
        ("load", "load", "load"),
        ("time", "time", "time"),
        ("file", "file", "file"),
        ("suite", "suite", "suite"),
        ("round-robin", "round-robin", "round-robin"),
        # pytest-xdist's names map to the nearest strategy
        ("worksteal", "worksteal", "time"),
        ("loadfile", "loadfile", "file"),
        ("loadscope", "loadscope", "suite"),
        ("loadgroup", "loadgroup", "time"),
        ("no", "no", "no"),
        (" LOAD ", "load", "load"),
        ("WorkSteal", "worksteal", "time"),
    ],
)
def test_dist_accepts_known_names(text: str, parsed: str, strategy: str) -> None:
    assert parse_dist(text) == parsed
    assert DIST_ALIASES[parse_dist(text)] == strategy


@pytest.mark.parametrize("text", ["each", "", "random"])
def test_dist_rejects_others_listing_the_choices(text: str) -> None:
    with pytest.raises(OptionError) as excinfo:
        parse_dist(text)
    message = str(excinfo.value)
    assert repr(text) in message
    assert "choose from: " + ", ".join(sorted(DIST_ALIASES)) in message


# ---------------------------------------------------------------------------- integers


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("3", 3), (" 12 ", 12), ("100", 100)])
def test_non_negative_int_accepts(text: str, value: int) -> None:
    assert parse_non_negative_int(text) == value


@pytest.mark.parametrize("text", ["-1", "-20"])
def test_non_negative_int_rejects_negatives(text: str) -> None:
    with pytest.raises(OptionError, match=r"expected a whole number >= 0, got -\d+"):
        parse_non_negative_int(text)


@pytest.mark.parametrize("text", ["", "x", "1.5", "one"])
def test_non_negative_int_rejects_garbage(text: str) -> None:
    with pytest.raises(OptionError) as excinfo:
        parse_non_negative_int(text)
    assert f"expected a whole number >= 0, got {text!r}" == str(excinfo.value)


# ---------------------------------------------------------------------------- specs


def spec_for(*flags: str) -> OptionSpec:
    return OptionSpec(flags=flags, dest="d", parse=str, default=None, metavar="M", help="h")


@pytest.mark.parametrize(
    ("flags", "ini_name"),
    [
        (("--max-worker-restart",), "parallel_exec_max_worker_restart"),
        (("-n", "--numprocesses"), "parallel_exec_numprocesses"),
        (("--dist",), "parallel_exec_dist"),
        (("--a-b-c-d",), "parallel_exec_a_b_c_d"),
    ],
)
def test_ini_name_rule(flags: tuple[str, ...], ini_name: str) -> None:
    spec = spec_for(*flags)
    assert spec.ini_name == ini_name
    assert spec.display == "/".join(flags)


def test_declared_options_follow_the_ini_rule() -> None:
    names = {spec.long_flag: spec.ini_name for spec in OPTIONS}
    assert names == {
        "--numprocesses": "parallel_exec_numprocesses",
        "--dist": "parallel_exec_dist",
        "--tx": "parallel_exec_tx",
        "--collection": "parallel_exec_collection",
        "--start-method": "parallel_exec_start_method",
        "--history": "parallel_exec_history",
        "--no-history": "parallel_exec_no_history",
        "--report-outcome": "parallel_exec_report_outcome",
        "--report-junit": "parallel_exec_report_junit",
        "--report-junit-extended": "parallel_exec_report_junit_extended",
        "--report-json": "parallel_exec_report_json",
        "--report-tap": "parallel_exec_report_tap",
        "--report-timeline": "parallel_exec_report_timeline",
        "--retries": "parallel_exec_retries",
        "--fail-on-flaky": "parallel_exec_fail_on_flaky",
        "--test-timeout": "parallel_exec_test_timeout",
        "--timeout-grace": "parallel_exec_timeout_grace",
        "--run-timeout": "parallel_exec_run_timeout",
        "--slow-after": "parallel_exec_slow_after",
        "--max-worker-memory": "parallel_exec_max_worker_memory",
        "--max-worker-tests": "parallel_exec_max_worker_tests",
        "--fail-on-leak": "parallel_exec_fail_on_leak",
        "--no-leak-check": "parallel_exec_no_leak_check",
        "--shard": "parallel_exec_shard",
        "--live": "parallel_exec_live",
        "--no-live": "parallel_exec_no_live",
        "--progress-every": "parallel_exec_progress_every",
        "--shard-run-id": "parallel_exec_shard_run_id",
        "--max-worker-restart": "parallel_exec_max_worker_restart",
    }


def test_declared_defaults_parse() -> None:
    for spec in OPTIONS:
        if spec.default is not None:
            spec.parse(spec.default)


@pytest.mark.parametrize(
    ("workers", "dist", "parallel"),
    [
        (None, "load", False),
        (WorkerCount("0", 0), "load", False),
        (WorkerCount("2", 2), "load", True),
        (WorkerCount("2", 2), "no", False),
        (WorkerCount("auto"), "load", True),
    ],
)
def test_wants_parallel(workers: WorkerCount | None, dist: str, parallel: bool) -> None:
    assert Settings(workers=workers, dist=dist, max_worker_restart=None).wants_parallel is parallel


@pytest.mark.parametrize(
    ("text", "seconds"), [("2", 2.0), ("0.5", 0.5), (" 60s ", 60.0), ("0", 0.0)]
)
def test_seconds(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1", "nan", "inf", ""])
def test_seconds_refused(text: str) -> None:
    with pytest.raises(OptionError):
        parse_seconds(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500MB", 500 * 10**6),
        ("300mb", 300 * 10**6),
        ("2GiB", 2 * 2**30),
        ("1.5 GiB", int(1.5 * 2**30)),
        ("64KiB", 64 * 2**10),
        ("1024", 1024),
        ("0", 0),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "-1MB", "2TB", "lots", "nanGiB", "infMB", "1.2.3MB"])
def test_sizes_reject_garbage(text: str) -> None:
    with pytest.raises(OptionError, match="expected a size such as 500MB or 2GiB"):
        parse_size(text)


def test_slow_after_takes_seconds_or_auto() -> None:
    assert parse_slow_after("auto") == -1.0
    assert parse_slow_after("30") == 30.0
    with pytest.raises(OptionError, match="seconds or 'auto'"):
        parse_slow_after("soon")


@pytest.mark.parametrize("text", ["1/1", "3/3", "1/1000", " 2/5 "])
def test_shards(text: str) -> None:
    shard = parse_shard(text)
    assert f"{shard}" == text.strip()


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "x/2", "1/1001", "2", "1/2/3", "-1/2", ""])
def test_shards_reject_garbage(text: str) -> None:
    with pytest.raises(OptionError, match="expected"):
        parse_shard(text)
