"""``parallel-exec merge``: three shards' JUnit reports merged equal the unsharded run's
(ignoring times, host and the shard and run properties), for pytest's ``--junitxml`` and
for ``--report-junit``; the merge refuses what is not one matrix's reports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import junitparser
import pytest
import xmlschema

if TYPE_CHECKING:
    from conftest import PluginRunner

pytestmark = pytest.mark.slow

JUNIT_SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "reference" / "junit-10.xsd"
IGNORED = ("time", "timestamp", "hostname", "worker")

SUITE = {
    f"test_m{f}": textwrap.dedent(
        f"""
        import sys

        import pytest

        @pytest.mark.parametrize("n", range(5))
        def test_p(n):
            print("out", n)
            assert (n, {f}) != (3, 1)

        @pytest.mark.skip(reason="never")
        def test_skipped():
            pass

        @pytest.mark.xfail(reason="known")
        def test_xfail():
            assert False

        @pytest.fixture
        def broken():
            raise RuntimeError("setup")

        def test_error(broken):
            pass

        @pytest.mark.xdist_group("shared")
        def test_grouped(record_property):
            record_property("where", "{f}")
        """
    )
    for f in range(3)
}


def merge(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parallel_exec.history.cli", "merge", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def normalized(path: Path) -> str:
    root = ET.parse(path).getroot()
    for element in root.iter():
        for name in IGNORED:
            element.attrib.pop(name, None)
        if element.tag == "properties":
            for prop in list(element):
                if str(prop.get("name", "")).startswith("parallel_exec."):
                    element.remove(prop)
    text = ET.tostring(root, "unicode")
    text = re.sub(r"<properties\s*/>|<properties>\s*</properties>", "", text)
    return re.sub(r">\s+<", "><", text)


#: Every report of a run, by flag, and its file suffix.
REPORTS = {
    "--junitxml": "xml",
    "--report-junit": "ours.xml",
    "--report-json": "json",
    "--report-outcome": "outcome.json",
    "--report-tap": "tap",
}


def run_matrix(
    runner: PluginRunner, flags: tuple[str, ...] = tuple(REPORTS), shards: int = 3
) -> tuple[dict[str, Path], list[dict[str, Path]]]:
    """The unsharded run and every shard, each from the same (empty) history, each
    writing the reports of ``flags``: ``(whole, [shard 1, ...])``, each by flag."""
    base = runner.pytester.path
    cache = base / ".pytest_cache"

    def one(name: str, *args: str) -> dict[str, Path]:
        shutil.rmtree(cache, ignore_errors=True)
        files = {flag: base / f"{name}.{REPORTS[flag]}" for flag in flags}
        runner.run(
            *args, *(f"{flag}={path}" for flag, path in files.items()), "-p", "no:randomly",
            workers=2,
        )  # fmt: skip
        return files

    whole = one("whole")
    parts = [one(f"shard{i}", "--shard", f"{i}/{shards}") for i in range(1, shards + 1)]
    shutil.rmtree(cache, ignore_errors=True)
    return whole, parts


def test_three_merged_shards_equal_the_unsharded_run(runner: PluginRunner) -> None:
    """Every format merged from one matrix: JUnit (pytest's and ours) equal to the
    unsharded run's, the JSON report's tests and summary, the outcome records, TAP."""
    from tap.parser import Parser
    from test_report_json import load

    runner.pytester.makepyfile(**SUITE)
    whole, parts = run_matrix(runner)
    base = runner.pytester.path

    def merged(flag: str) -> Path:
        out = base / f"merged.{REPORTS[flag]}"
        done = merge("-o", out, *reversed([p[flag] for p in parts]))
        assert done.returncode == 0, done.stderr
        assert "merged 3 shards" in done.stdout
        return out

    for flag in ("--junitxml", "--report-junit"):
        junit = merged(flag)
        assert normalized(junit) == normalized(whole[flag]), flag
        properties = {
            p.get("name"): p.get("value") for p in ET.parse(junit).getroot().iter("property")
        }
        assert properties["parallel_exec.shards"] == "3"
        assert properties["parallel_exec.shard_plan"]
        cases = [case for s in junitparser.JUnitXml.fromfile(str(junit)) for case in s]
        assert len(cases) == len(list(ET.parse(whole[flag]).getroot().iter("testcase")))
    if JUNIT_SCHEMA.is_file():
        xmlschema.XMLSchema(str(JUNIT_SCHEMA)).validate(str(merged("--report-junit")))

    expected, found = load(whole["--report-json"]), load(merged("--report-json"))

    def comparable(test: dict[str, object]) -> dict[str, object]:
        return {
            k: v
            for k, v in test.items()
            if k not in ("worker", "duration", "phases", "started", "predicted")
        }

    assert [comparable(t) for t in found["tests"]] == [comparable(t) for t in expected["tests"]]
    assert found["summary"] == expected["summary"]
    assert found["exit_code"] == expected["exit_code"]
    assert {key.split(":")[0] for key in found["workerStats"]} == {"1/3", "2/3", "3/3"}
    # A test names its worker as the merged report does (every shard has its gw0).
    assert {t["worker"] for t in found["tests"]} <= set(found["workerStats"])

    record = json.loads(merged("--report-outcome").read_text())
    shards = [json.loads(p["--report-outcome"].read_text()) for p in parts]
    assert record["tests_executed"] == len(expected["tests"])
    assert record["failed"] == sum(s["failed"] for s in shards) == 1
    assert record["errors"] == sum(s["errors"] for s in shards) == 3
    assert record["actual_makespan"] == max(s["actual_makespan"] for s in shards)
    assert record["lower_bound"] == max(s["lower_bound"] for s in shards)
    assert len({s["shard_plan"] for s in shards}) == 1
    assert record["shard_plan"] == shards[0]["shard_plan"]

    def points(path: Path) -> dict[str, bool]:
        lines = list(Parser().parse_file(str(path)))
        plans = [line for line in lines if line.category == "plan"]
        assert len(plans) == 1
        tests = [line for line in lines if line.category == "test"]
        assert plans[0].expected_tests == len(tests)
        assert [t.number for t in tests] == list(range(1, len(tests) + 1))
        return {t.description: t.ok for t in tests}

    assert points(merged("--report-tap")) == points(whole["--report-tap"])


def test_the_merge_refuses_what_is_not_one_matrix(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(**SUITE)
    whole_reports, shard_reports = run_matrix(runner, ("--junitxml",))
    whole, parts = whole_reports["--junitxml"], [p["--junitxml"] for p in shard_reports]
    out = runner.pytester.path / "out.xml"

    missing = merge("-o", out, parts[0], parts[2])
    assert missing.returncode == 2
    assert "missing shard: 2/3" in missing.stderr

    twice = merge("-o", out, parts[0], parts[0], parts[1], parts[2])
    assert twice.returncode == 2
    assert "shard 1/3 is given twice" in twice.stderr

    unsharded = merge("-o", out, whole, *parts)
    assert unsharded.returncode == 2
    assert "is not the report of a shard" in unsharded.stderr

    # Another plan: the same suite split in two.
    other = runner.pytester.path / "other.xml"
    runner.run("--shard", "1/2", f"--junitxml={other}", "-p", "no:randomly", workers=2)
    mixed_plans = merge("-o", out, other, *parts[1:])
    assert mixed_plans.returncode == 2
    assert "come from different plans" in mixed_plans.stderr

    tap = runner.pytester.path / "run.tap"
    tap.write_text("TAP version 13\n1..0\n")
    mixed = merge("-o", out, tap, *parts)
    assert mixed.returncode == 2
    assert "different formats" in mixed.stderr

    # A test in two shards (a report edited, or two matrices' shards mixed).
    doubled = runner.pytester.path / "doubled.xml"
    tree = ET.parse(parts[1])
    suite = tree.getroot().find("testsuite")
    assert suite is not None
    first_case = next(ET.parse(parts[0]).getroot().iter("testcase"))
    suite.append(first_case)
    tree.write(doubled)
    reported_twice = merge("-o", out, parts[0], doubled, parts[2])
    assert reported_twice.returncode == 2
    assert "is reported twice" in reported_twice.stderr
    for result in (missing, twice, unsharded, mixed_plans, mixed, reported_twice):
        assert "Traceback" not in result.stderr
    assert not out.exists()
