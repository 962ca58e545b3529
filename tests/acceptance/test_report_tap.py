"""``--report-tap``: the real plugin's TAP, read by the consumers a CI would use.

Perl's ``TAP::Parser`` (what ``prove`` runs; its YAMLish reader is stricter than YAML)
and the ``tap.py`` package parse every document; ``prove`` gives the verdict a harness
would.  On the zoo the points must count what pytest's own summary counts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tap.parser import Parser  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from conftest import PluginRunner

#: Perl's TAP::Parser, dumping what it read as JSON.
PERL_DUMP = r"""
use strict; use warnings; use TAP::Parser; use JSON::PP;
binmode STDIN; binmode STDOUT;
my $tap = do { local $/; <STDIN> };
my $parser = TAP::Parser->new({ tap => $tap });
my @out;
while (my $r = $parser->next) {
  my %h = (type => $r->type, raw => $r->raw);
  if ($r->is_test) {
    %h = (%h, ok => ($r->is_actual_ok ? JSON::PP::true : JSON::PP::false),
          number => $r->number, description => $r->description,
          directive => $r->directive);
  }
  $h{data} = $r->data if $r->is_yaml;
  $h{tests_planned} = $r->tests_planned if $r->is_plan;
  push @out, \%h;
}
print JSON::PP->new->canonical->encode(
  { results => \@out, parse_errors => [$parser->parse_errors] });
"""

PASSING_SUITE = """
    import time

    import pytest


    @pytest.mark.parametrize("n", range(6))
    def test_passes(n):
        time.sleep(0.02)


    @pytest.mark.skip(reason="not on this machine")
    def test_skipped():
        pass


    @pytest.mark.xfail(reason="known bug")
    def test_xfails():
        assert 0


    @pytest.mark.xfail(reason="fixed meanwhile")
    def test_xpasses():
        pass
"""


def tool_or_skip(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def perl_read(text: str) -> list[dict[str, Any]]:
    """TAP::Parser's reading of a document, which must have no parse error."""
    completed = subprocess.run(
        [tool_or_skip("perl"), "-e", PERL_DUMP],
        input=text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if completed.returncode != 0 and b"Can't locate" in completed.stderr:
        pytest.skip("Perl's TAP::Parser or JSON::PP is not installed")
    assert completed.returncode == 0, completed.stderr.decode("utf-8", "replace")
    read = json.loads(completed.stdout.decode("utf-8"))
    assert read["parse_errors"] == []
    results: list[dict[str, Any]] = read["results"]
    assert results[0]["type"] == "version"
    assert "unknown" not in {r["type"] for r in results}
    tests = [r for r in results if r["type"] == "test"]
    assert [t["number"] for t in tests] == list(range(1, len(tests) + 1))
    plans = [r for r in results if r["type"] == "plan"]
    assert len(plans) == 1
    assert plans[0]["tests_planned"] == len(tests)
    return results


def tappy_check(text: str, points: int) -> None:
    """tap.py reads the same points (it skips YAML blocks without its YAML extra)."""
    lines = list(Parser().parse_text(text))
    tests = [line for line in lines if line.category == "test"]
    assert [t.number for t in tests] == list(range(1, points + 1))
    assert [line.category for line in lines].count("plan") == 1


def prove(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool_or_skip("prove"), "--exec", "cat", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def pytest_counts(results: list[dict[str, Any]]) -> dict[str, int]:
    """What pytest's summary line counts, derived from the points and their blocks.

    pytest counts reports: each failed setup or teardown is an ``error`` beside the
    call's own word (a passing test whose teardown fails is "1 passed, 1 error").
    """
    counts: Counter[str] = Counter()
    for index, result in enumerate(results):
        if result["type"] != "test":
            continue
        following = results[index + 1] if index + 1 < len(results) else {}
        block = following.get("data") if following.get("type") == "yaml" else None
        directive = result["directive"]
        if directive == "SKIP":
            counts["skipped"] += 1
        elif directive == "TODO":
            counts["xpassed" if result["ok"] else "xfailed"] += 1
        elif result["ok"]:
            counts["passed"] += 1
        else:
            assert block is not None, f"{result['description']} failed without a YAML block"
            phases = [block["phase"]] + [f["phase"] for f in block.get("more_failures", [])]
            counts["errors"] += sum(phase in ("setup", "teardown", "collect") for phase in phases)
            if "call" in phases:
                counts["failed"] += 1
            elif block["outcome"] in ("skipped", "xfailed"):
                counts[block["outcome"]] += 1
            elif block["outcome"] == "error" and block["phase"] == "teardown":
                counts["passed"] += 1
    return {word: count for word, count in counts.items() if count}


def collected_nodeids(runner: PluginRunner, *args: str) -> list[str]:
    result = runner.run("--collect-only", "-q", *args)
    return [line for line in result.outlines if "::" in line and " " not in line.split("::")[0]]


@pytest.mark.slow
def test_zoo_tap_counts_what_pytest_counts(runner: PluginRunner, zoo: tuple[str, ...]) -> None:
    path = runner.pytester.path / "out" / "report.tap"
    result = runner.run(*zoo, "--report-tap", str(path), workers=2)
    runner.assert_no_traceback(result)
    text = path.read_bytes().decode("utf-8")
    results = perl_read(text)
    tests = [r for r in results if r["type"] == "test"]
    tappy_check(text, len(tests))

    expected = {
        k: v for k, v in result.parseoutcomes().items() if k not in ("warnings", "deselected")
    }
    assert pytest_counts(results) == expected
    nodeids = collected_nodeids(runner, *zoo)
    assert sorted(t["description"] for t in tests) == sorted(f"- {n}" for n in nodeids)
    verdict = prove(path)
    assert verdict.returncode != 0, verdict.stdout
    assert "Parse errors" not in verdict.stdout


def test_a_passing_suite_passes_prove(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_passing=PASSING_SUITE)
    path = runner.pytester.path / "passing.tap"
    result = runner.run("--report-tap", str(path), workers=2)
    assert result.ret == 0, result.stdout.str()
    text = path.read_bytes().decode("utf-8")
    results = perl_read(text)
    tappy_check(text, 9)
    assert pytest_counts(results) == result.parseoutcomes()
    verdict = prove(path)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "Result: PASS" in verdict.stdout


def test_report_tap_dash_streams_to_standard_output(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(
        test_passing=PASSING_SUITE,
        test_failing="def test_fails():\n    assert 1 + 1 == 3, 'arithmetic # broke'\n",
    )
    # The stream owns standard output; pytest's terminal report moves to stderr, whole.
    result = runner.run("--report-tap", "-", workers=2)
    assert result.ret == 1
    text = "".join(f"{line}\n" for line in result.outlines)
    assert "1 failed, 6 passed" in "\n".join(result.errlines)
    results = perl_read(text)
    tests = [r for r in results if r["type"] == "test"]
    tappy_check(text, 10)
    assert pytest_counts(results) == {
        "passed": 6,
        "skipped": 1,
        "xfailed": 1,
        "xpassed": 1,
        "failed": 1,
    }
    failed = next(t for t in tests if not t["ok"] and t["directive"] == "")
    block = results[results.index(failed) + 1]["data"]
    assert block["message"] == "AssertionError: arithmetic # broke"
    assert (block["file"], block["line"], block["phase"]) == ("test_failing.py", "1", "call")
    assert block["worker"] in {"gw0", "gw1"}
    assert not list(runner.pytester.path.glob("-")), "'-' must not be written as a file"


@pytest.mark.slow
def test_report_tap_dash_into_a_pipe_that_closes_ends_tap_not_the_run(
    runner: PluginRunner,
) -> None:
    """``--report-tap - | head -1``: the reader goes away after one line; TAP output
    ends there, the run finishes with its own exit code and says what happened."""
    runner.pytester.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.parametrize("n", range(300))
        def test_many(n):
            pass

        def test_fails():
            assert 0
        """
    )
    command = runner.command("--report-tap", "-", workers=2)
    writer = subprocess.Popen(
        command, cwd=runner.pytester.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert writer.stdout is not None
    first = writer.stdout.readline()
    writer.stdout.close()  # what head -1 does
    _, stderr = writer.communicate(timeout=120)
    text = stderr.decode(errors="replace")
    assert first == b"TAP version 13\n"
    assert writer.returncode == 1, text
    assert "1 failed, 300 passed" in text
    assert "the TAP report (standard output) stopped, the run went on" in text
    assert "INTERNALERROR" not in text
    assert "Traceback" not in text


@pytest.mark.slow
def test_a_report_that_cannot_be_written_is_a_warning(runner: PluginRunner) -> None:
    """A report's directory turns into a file between configure and the end (as a full
    disk or a vanished mount would fail it): the other reports are written, the run
    keeps its exit code, and the failure is named."""
    runner.pytester.makeconftest(
        """
        import os
        import shutil

        def pytest_runtest_logreport(report):
            if report.when == "teardown" and not os.environ.get("PYTEST_XDIST_WORKER"):
                # In the controller, before the reports are written: the directory
                # becomes a file, so nothing can be written below it any more.
                shutil.rmtree("gone")
                open("gone", "w").close()
        """
    )
    runner.pytester.makepyfile(test_one="def test_one():\n    pass\n")
    (runner.pytester.path / "gone").mkdir()
    result = runner.run("--report-tap", "gone/out.tap", "--report-json", "kept.json", workers=2)
    text = runner.output(result)
    assert result.ret == 0, text
    assert re.search(r"the TAP report \(\S*gone/out.tap\) stopped, the run went on", text), text
    assert (runner.pytester.path / "kept.json").exists()
    runner.assert_no_traceback(result)
