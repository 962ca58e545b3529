"""The plugin compatibility matrix: each plugin's main feature, serial against parallel.

Each test writes a small suite that exercises one plugin, runs it serially and with
``-p parallel_exec -n 2`` / ``-n 4`` in the plugin environment (``plugin_env``), and
asserts what the plugin promises is the same: the coverage table and reports, the
random values, the snapshot report, the benchmark behaviour, the timeout message...
Plugins that find pytest-xdist by importing it are also run as if it were not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from plugin_env import Result, Runner

pytestmark = pytest.mark.slow

WORKERS = (2, 4)


def worker_counts(hide_xdist: bool = False) -> tuple[int, ...]:
    """The counts each plugin is compared at: -n 2 and -n 4; with pytest-xdist hidden,
    -n 2 only (what changes there is how plugins find xdist, not the pool)."""
    return WORKERS[:1] if hide_xdist else WORKERS


def same_outcome(serial: Result, parallel: Result) -> None:
    assert (parallel.returncode, parallel.summary) == (serial.returncode, serial.summary), (
        f"{serial}\n\n{parallel}"
    )
    for alarm in ("INTERNALERROR", "Traceback (most recent call last)", "KeyError"):
        assert alarm not in parallel.stdout + parallel.stderr, str(parallel)


# --------------------------------------------------------------------- pytest-cov

COV_SUITE = {
    "mylib.py": (
        "def classify(n):\n"
        "    if n < 0:\n"
        "        return 'negative'\n"
        "    elif n == 0:\n"
        "        return 'zero'\n"
        "    return 'positive'\n"
        "\n"
        "\n"
        "def unused(x):\n"
        "    if x:\n"
        "        return 1\n"
        "    return 2\n"
    ),
    "test_a.py": (
        "from mylib import classify\n\ndef test_neg():\n    assert classify(-1) == 'negative'\n"
    ),
    "test_b.py": (
        "from mylib import classify\n\ndef test_pos():\n    assert classify(3) == 'positive'\n"
    ),
    "test_c.py": "def test_other():\n    assert True\n",
}
COV_ARGS = (
    "--cov=mylib",
    "--cov-branch",
    "--cov-report=term-missing",
    "--cov-report=xml:cov.xml",
    "--cov-report=json:cov.json",
    "--cov-report=html:htmlcov",
)


def coverage_seen(runner: Runner, result: Result) -> dict[str, object]:
    """Everything a coverage report says about the code, without times and paths."""
    lines = result.stdout.splitlines()
    table = [line for line in lines if line.startswith(("mylib.py", "TOTAL", "Name "))]
    data = json.loads((runner.path / "cov.json").read_text())
    files = {
        name: {
            k: v
            for k, v in entry.items()
            if k
            in (
                "executed_lines",
                "missing_lines",
                "executed_branches",
                "missing_branches",
                "summary",
            )
        }
        for name, entry in data["files"].items()
    }
    root = ET.parse(runner.path / "cov.xml").getroot()
    xml_rates = {
        k: root.get(k)
        for k in (
            "line-rate",
            "branch-rate",
            "lines-covered",
            "lines-valid",
            "branches-covered",
            "branches-valid",
        )
    }
    html = (runner.path / "htmlcov" / "index.html").read_text()
    html_total = re.search(r'class="pc_cov">([^<]+)<', html)
    return {
        "table": table,
        "json": (files, data["totals"]),
        "xml": xml_rates,
        "html": html_total.group(1) if html_total else None,
        "left": sorted(p.name for p in runner.files(".coverage.*")),
    }


def test_pytest_cov_parallel_equals_serial(runner: Runner, hide_xdist: bool) -> None:
    runner.hide_xdist = hide_xdist
    runner.write(COV_SUITE)
    serial = runner.serial(*COV_ARGS)
    expected = coverage_seen(runner, serial)
    assert "TOTAL" in serial.stdout, str(serial)
    assert expected["left"] == []
    for workers in worker_counts(hide_xdist):
        parallel = runner.parallel(workers, *COV_ARGS)
        same_outcome(serial, parallel)
        assert coverage_seen(runner, parallel) == expected, str(parallel)


@pytest.mark.parametrize("args", [("-n", "0"), ()], ids=["-n 0", "no -n"])
def test_pytest_cov_in_process_with_the_plugin_loaded(
    runner: Runner, args: tuple[str, ...]
) -> None:
    """No workers: pytest-cov measures centrally, as without parallel_exec."""
    runner.write(COV_SUITE)
    serial = runner.serial(*COV_ARGS)
    expected = coverage_seen(runner, serial)
    in_process = runner.run("-p", "parallel_exec", *args, *COV_ARGS)
    same_outcome(serial, in_process)
    assert coverage_seen(runner, in_process) == expected, str(in_process)


# --------------------------------------------------------------------- pytest-randomly

RANDOM_SUITE = {
    "test_values.py": (
        "import random\n"
        "import pytest\n"
        "\n"
        "@pytest.mark.parametrize('i', range(4))\n"
        "def test_value(i, request):\n"
        "    out = request.config.rootpath / 'values' / request.node.name\n"
        "    out.parent.mkdir(exist_ok=True)\n"
        "    out.write_text(repr(random.random()))\n"
    ),
    "test_more.py": (
        "import random\n"
        "\n"
        "def test_a(request):\n"
        "    out = request.config.rootpath / 'values' / 'a'\n"
        "    out.parent.mkdir(exist_ok=True)\n"
        "    out.write_text(repr(random.random()))\n"
    ),
}


def random_values(runner: Runner) -> dict[str, str]:
    values = {p.name: p.read_text() for p in runner.files("values/*")}
    shutil.rmtree(runner.path / "values", ignore_errors=True)
    return values


def test_pytest_randomly_same_seed_same_values(runner: Runner, hide_xdist: bool) -> None:
    runner.hide_xdist = hide_xdist
    runner.write(RANDOM_SUITE)
    serial = runner.serial("--randomly-seed=1234")
    expected = random_values(runner)
    assert len(expected) == 5, str(serial)
    assert "--randomly-seed=1234" in serial.stdout
    for workers in worker_counts(hide_xdist):
        parallel = runner.parallel(workers, "--randomly-seed=1234")
        same_outcome(serial, parallel)
        assert "--randomly-seed=1234" in parallel.stdout
        assert random_values(runner) == expected


def test_pytest_randomly_seed_chosen_by_the_controller(runner: Runner) -> None:
    """Without a seed, the controller's reaches every worker: a serial run with the seed
    it printed gives the same values."""
    runner.write(RANDOM_SUITE)
    parallel = runner.parallel(2)
    assert parallel.returncode == 0, str(parallel)
    seed = re.search(r"--randomly-seed=(\d+)", parallel.stdout)
    assert seed is not None, str(parallel)
    values = random_values(runner)
    serial = runner.serial(f"--randomly-seed={seed.group(1)}")
    assert serial.returncode == 0
    assert random_values(runner) == values


def test_pytest_randomly_disabled(runner: Runner) -> None:
    runner.write(RANDOM_SUITE)
    parallel = runner.parallel(2, "-p", "no:randomly")
    assert (parallel.returncode, parallel.summary) == (0, "5 passed"), str(parallel)
    assert "randomly-seed" not in parallel.stdout


# --------------------------------------------------------------------- syrupy

SNAPSHOT_SUITE = {
    "test_snap.py": (
        "def test_one(snapshot):\n"
        "    assert {'a': 1} == snapshot\n"
        "\n"
        "def test_two(snapshot):\n"
        "    assert 'two' == snapshot\n"
    ),
    "test_old.py": "def test_old(snapshot):\n    assert [1, 2] == snapshot\n",
    "test_plain.py": "def test_plain():\n    assert True\n",
}


def snapshot_report(result: Result) -> list[str]:
    lines = result.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if "snapshot report summary" in line), None)
    if start is None:
        return []
    report = []
    for line in lines[start + 1 :]:
        if line.startswith("="):
            break
        report.append(line)
    return report


def stale_snapshots(runner: Runner) -> None:
    """Snapshots taken, then a test and a test file removed: two unused snapshots."""
    runner.write(SNAPSHOT_SUITE)
    taken = runner.serial("--snapshot-update")
    assert taken.returncode == 0, str(taken)
    (runner.path / "test_old.py").unlink()
    runner.write({"test_snap.py": SNAPSHOT_SUITE["test_snap.py"].split("\ndef test_two")[0]})


def snapshot_files(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): p.read_text()
        for p in sorted(path.rglob("__snapshots__/*"))
        if p.is_file()
    }


def test_syrupy_unused_snapshots(runner: Runner, hide_xdist: bool) -> None:
    runner.hide_xdist = hide_xdist
    stale_snapshots(runner)
    serial = runner.serial()
    assert serial.returncode == 1, str(serial)
    assert snapshot_report(serial), str(serial)
    for workers in worker_counts(hide_xdist):
        parallel = runner.parallel(workers)
        same_outcome(serial, parallel)
        assert snapshot_report(parallel) == snapshot_report(serial)

    twin = runner.path.parent / "twin"
    shutil.copytree(runner.path, twin)
    serial_update = Runner(runner.python, twin, hide_xdist).serial("--snapshot-update")
    parallel_update = runner.parallel(worker_counts(hide_xdist)[-1], "--snapshot-update")
    same_outcome(serial_update, parallel_update)
    assert snapshot_report(parallel_update) == snapshot_report(serial_update)
    assert snapshot_files(runner.path) == snapshot_files(twin)
    assert not list(runner.path.rglob("*.lock")), sorted(runner.path.rglob("*"))


# --------------------------------------------------------------------- pytest-benchmark

BENCH_SUITE = {
    "test_bench.py": "def test_sum(benchmark):\n    benchmark(sum, range(100))\n",
    "test_plain.py": "def test_plain():\n    assert True\n",
}
DISABLED = "Benchmarks are automatically disabled because xdist plugin is active"


@pytest.mark.parametrize("args", [(), ("-n", "0", "--benchmark-only")], ids=["no -n", "-n 0"])
def test_pytest_benchmark_in_process_unaffected(runner: Runner, args: tuple[str, ...]) -> None:
    runner.write(BENCH_SUITE)
    serial = runner.serial(*[a for a in args if a not in ("-n", "0")])
    in_process = runner.run("-p", "parallel_exec", *args)
    assert (in_process.returncode, in_process.summary) == (serial.returncode, serial.summary)
    for result in (serial, in_process):
        assert "benchmark: 1 tests" in result.stdout, str(result)
        assert DISABLED not in result.stdout, str(result)


def test_pytest_benchmark_disabled_with_its_warning(runner: Runner) -> None:
    runner.write(BENCH_SUITE)
    for result in (runner.xdist(2), *(runner.parallel(n) for n in WORKERS)):
        assert result.returncode == 0, str(result)
        assert DISABLED in result.stdout + result.stderr, str(result)
        assert "benchmark: 1 tests" not in result.stdout


# --------------------------------------------------------------------- pytest-timeout

TIMEOUT_SUITE = {
    "test_slow.py": (
        "import threading\n"
        "import time\n"
        "\n"
        "def test_hangs():\n"
        "    done = threading.Event()\n"
        "    threading.Thread(target=done.wait, name='helper', daemon=True).start()\n"
        "    time.sleep(20)\n"
    ),
    "test_fast.py": "def test_fast():\n    assert True\n",
}


def test_pytest_timeout_banner_and_stacks(runner: Runner) -> None:
    runner.write(TIMEOUT_SUITE)
    args = ("--timeout=1", "--timeout-method=signal")
    serial = runner.serial(*args)
    parallel = [runner.parallel(workers, *args) for workers in WORKERS]
    for result in parallel:
        same_outcome(serial, result)
    for result in (serial, *parallel):
        assert re.search(r"\+{5,} Timeout \+{5,}", result.stdout), str(result)
        assert "Stack of helper" in result.stdout, str(result)
        assert "Timeout (>1.0s) from pytest-timeout" in result.stdout, str(result)


def test_pytest_timeout_thread_method_is_a_failure_not_a_crash(runner: Runner) -> None:
    """Its thread method ends the whole process (``os._exit(1)``): serially the run dies
    there; on a worker the test fails with pytest-timeout's message and the stacks it
    wrote, the worker is replaced, and the other tests run."""
    runner.write(TIMEOUT_SUITE)
    for workers in WORKERS:
        result = runner.parallel(workers, "--timeout=1", "--timeout-method=thread")
        assert result.returncode == 1, str(result)
        # (syrupy, installed here, warns that the ended worker sent it no report.)
        assert result.summary.startswith("1 failed, 1 passed"), str(result)
        assert "Failed: Timeout (>1.0s) from pytest-timeout." in result.stdout, str(result)
        assert "Stack of helper" in result.stdout, str(result)
        assert "crashed" not in result.stdout, str(result)
        assert "pytest-timeout enforces --timeout 1.0" in result.stdout, str(result)


# --------------------------------------------------------------------- pytest-sugar

SUGAR_SUITE = {f"test_s{i}.py": f"def test_{i}():\n    assert True\n" for i in range(4)}


def test_pytest_sugar_progress_reaches_100(runner: Runner) -> None:
    """With pytest-xdist installed: pytest-sugar listens to xdist's collection hook only
    when it can ``import xdist`` (without it, its bar stays at 0 %: docs/compatibility.md)."""
    runner.write(SUGAR_SUITE)
    serial = runner.serial("--force-sugar")
    parallel = [runner.parallel(workers, "--force-sugar") for workers in WORKERS]
    for result in (serial, *parallel):
        assert result.returncode == 0, str(result)
        assert "100%" in result.stdout, str(result)
        assert re.search(r"Results \(", result.stdout), str(result)


# --------------------------------------------------------------------- pytest-env


def test_pytest_env_applied_once(runner: Runner) -> None:
    check = "import os\n\ndef test_env():\n    assert os.environ['APPENDED'] == 'base:suffix'\n"
    runner.write(
        {
            "pytest.ini": "[pytest]\nenv =\n    APPENDED={APPENDED}:suffix\n",
            "test_e1.py": check,
            "test_e2.py": check.replace("test_env", "test_env2"),
        }
    )
    runner.env["APPENDED"] = "base"
    serial = runner.serial()
    assert serial.returncode == 0, str(serial)
    for workers in WORKERS:
        same_outcome(serial, runner.parallel(workers))


# --------------------------------------------------------------------- pytest-rerunfailures

FLAKY_SUITE = {
    "test_flaky.py": (
        "import pathlib\n"
        "\n"
        "def test_flaky():\n"
        "    marker = pathlib.Path(__file__).with_name('ran-once')\n"
        "    if not marker.exists():\n"
        "        marker.write_text('1')\n"
        "        assert False, 'first run fails'\n"
        "\n"
        "def test_fine():\n"
        "    assert True\n"
    ),
}


def test_rerunfailures_fail_on_flaky(runner: Runner, hide_xdist: bool) -> None:
    runner.hide_xdist = hide_xdist
    runner.write(FLAKY_SUITE)
    serial = runner.serial("--reruns", "1", "--fail-on-flaky")
    assert serial.returncode == 7, str(serial)
    for workers in worker_counts(hide_xdist):
        (runner.path / "ran-once").unlink()
        same_outcome(serial, runner.parallel(workers, "--reruns", "1", "--fail-on-flaky"))
    (runner.path / "ran-once").unlink()
    plain = runner.parallel(2, "--reruns", "1")
    assert (plain.returncode, plain.summary) == (0, serial.summary), str(plain)


def test_rerunfailures_reruns_a_crashed_test_as_under_xdist(runner: Runner) -> None:
    """``pytest_handlecrashitem``: pytest-rerunfailures runs a test that crashed its
    worker again (a serial run has no worker to lose; xdist is the reference)."""
    runner.write(
        {
            "test_crash.py": (
                "import os\n"
                "import pathlib\n"
                "\n"
                "def test_crashes_once():\n"
                "    marker = pathlib.Path(__file__).with_name('crashed-once')\n"
                "    if not marker.exists():\n"
                "        marker.write_text('1')\n"
                "        os._exit(1)\n"
                "\n"
                "def test_fine():\n"
                "    assert True\n"
            )
        }
    )
    # syrupy: a crashed worker's snapshot report is missing, which parallel_exec (not
    # xdist) counts, so syrupy warns that its unused detection is incomplete.
    args = ("--reruns", "1", "-p", "no:syrupy")
    xdist = runner.xdist(2, *args)
    (runner.path / "crashed-once").unlink()
    parallel = runner.parallel(2, *args)
    assert (parallel.returncode, parallel.summary) == (xdist.returncode, xdist.summary), (
        f"{xdist}\n\n{parallel}"
    )
    assert "rerun" in parallel.summary, str(parallel)


# --------------------------------------------------------------------- reporters

REPORTED_SUITE = {
    "test_r1.py": "def test_ok():\n    assert True\n\ndef test_bad():\n    assert 1 == 2\n",
    "test_r2.py": (
        "import pytest\n\n@pytest.mark.skip(reason='no')\ndef test_skip():\n    pass\n\n"
        "def test_ok2():\n    assert True\n"
    ),
}


def json_report(runner: Runner) -> dict[str, object]:
    data = json.loads((runner.path / "report.json").read_text())
    return {
        "summary": {k: v for k, v in data["summary"].items() if k != "duration"},
        "tests": sorted((t["nodeid"], t["outcome"]) for t in data["tests"]),
    }


def html_outcomes(runner: Runner) -> tuple[list[tuple[str, str]], object]:
    """pytest-html's results, and the ``Build`` entry pytest-metadata gave it."""
    html = (runner.path / "report.html").read_text()
    blob = re.search(r'data-jsonblob="([^"]*)"', html)
    assert blob is not None
    import html as html_module

    data = json.loads(html_module.unescape(blob.group(1)))
    results = sorted(
        (nodeid, entry["result"]) for nodeid, entries in data["tests"].items() for entry in entries
    )
    return results, data.get("environment", {}).get("Build")


def test_reporters_html_json_metadata(runner: Runner) -> None:
    runner.write(REPORTED_SUITE)
    args = (
        "--html=report.html",
        "--self-contained-html",
        "--json-report",
        "--json-report-file=report.json",
        "--metadata",
        "Build",
        "42",
    )
    serial = runner.serial(*args)
    expected = (json_report(runner), html_outcomes(runner))
    assert expected[1][1] == "42", str(serial)
    for workers in WORKERS:
        parallel = runner.parallel(workers, *args)
        same_outcome(serial, parallel)
        assert (json_report(runner), html_outcomes(runner)) == expected


def test_instafail_shows_failures_as_they_happen(runner: Runner) -> None:
    runner.write(REPORTED_SUITE)
    serial = runner.serial("--instafail")
    parallel = [runner.parallel(workers, "--instafail") for workers in WORKERS]
    for result in parallel:
        same_outcome(serial, result)
    for result in (serial, *parallel):
        assert "assert 1 == 2" in result.stdout, str(result)
