"""The ``--report-tap`` writer, fed events built from real pytest reports.

Reports come from a small in-process pytest run (so longreprs, skip tuples and xfail
reasons are pytest's own) or from the controller's crash/not-run report makers.  Every
document written is read back by real consumers: Perl's ``TAP::Parser`` (the parser
``prove`` runs; its YAMLish reader is what YAML blocks must satisfy), ``prove`` itself
for the exit status a harness would see, and the ``tap.py`` package's parser (plus
PyYAML on the blocks, where it is installed).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from inline_reports import run_inline
from tap.line import Result  # type: ignore[import-untyped]
from tap.parser import Parser  # type: ignore[import-untyped]

from parallel_exec.controller.crashes import closing_report, crash_report
from parallel_exec.reporting import events
from parallel_exec.reporting.writers.tap import TapWriter, description, diagnostic_block

# --------------------------------------------------------------------------- consumers

#: Perl's TAP::Parser, dumping what it read as JSON (strings stay the file's UTF-8).
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
          directive => $r->directive, explanation => $r->explanation);
  }
  $h{data} = $r->data if $r->is_yaml;
  $h{explanation} = $r->explanation if $r->is_bailout;
  $h{tests_planned} = $r->tests_planned if $r->is_plan;
  push @out, \%h;
}
print JSON::PP->new->canonical->encode({
  results => \@out, parse_errors => [$parser->parse_errors],
  version => $parser->version, failed => [$parser->failed], todo => [$parser->todo],
  skipped => [$parser->skipped], passed => [$parser->passed],
});
"""


def perl_or_skip() -> str:
    perl = shutil.which("perl")
    if perl is None:
        pytest.skip("perl is not installed")
    probe = subprocess.run(
        [perl, "-MTAP::Parser", "-MJSON::PP", "-e", "1"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("Perl's TAP::Parser or JSON::PP is not installed")
    return perl


@dataclass
class PerlView:
    """A TAP document as TAP::Parser read it."""

    results: list[dict[str, Any]]
    parse_errors: list[str]
    version: int
    failed: list[int]
    todo: list[int]
    skipped: list[int]
    passed: list[int]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.results if r["type"] == kind]

    @property
    def tests(self) -> list[dict[str, Any]]:
        return self.of_type("test")

    def test(self, name: str) -> dict[str, Any]:
        found = [t for t in self.tests if t["description"] == f"- {description(name)}"]
        assert len(found) == 1, (name, [t["description"] for t in self.tests])
        return found[0]

    def yaml(self, name: str) -> dict[str, Any] | None:
        """The YAML block right after the test point of ``name``."""
        point = self.test(name)
        index = self.results.index(point)
        following = self.results[index + 1] if index + 1 < len(self.results) else None
        return following["data"] if following and following["type"] == "yaml" else None


def perl_read(text: str) -> PerlView:
    completed = subprocess.run(
        [perl_or_skip(), "-e", PERL_DUMP],
        input=text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode("utf-8", "replace")
    return PerlView(**json.loads(completed.stdout.decode("utf-8")))


def prove(path: Path) -> subprocess.CompletedProcess[str]:
    """``prove`` on a TAP file, the way a harness reads a test script's output."""
    binary = shutil.which("prove")
    if binary is None:
        pytest.skip("prove (Perl's Test::Harness) is not installed")
    return subprocess.run(
        [binary, "-v", "--exec", "cat", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def yaml_module() -> Any:
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    return yaml


def tappy_read(text: str) -> list[Any]:
    """tap.py's lines; without its YAML extra it skips TAP 13 blocks as ``unknown``."""
    from tap import parser as tap_parser  # type: ignore[import-untyped]

    lines = list(Parser().parse_text(text))
    if tap_parser.ENABLE_VERSION_13:
        unknown = [line for line in lines if line.category == "unknown"]
        assert not unknown, "tap.py read lines it does not know"
    return lines


@dataclass
class Read:
    """One document as every consumer read it, cross-checked."""

    text: str
    perl: PerlView
    tappy: list[Any] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @property
    def tappy_tests(self) -> list[Result]:
        return [line for line in self.tappy if line.category == "test"]


def read(text: str) -> Read:
    """Parse ``text`` with TAP::Parser and tap.py; check what every TAP 13 document must be."""
    assert text.endswith("\n")
    assert "\r" not in text
    lines = text.split("\n")[:-1]
    assert lines[0] == "TAP version 13"
    perl = perl_read(text)
    assert perl.parse_errors == [], perl.parse_errors
    assert perl.version == 13
    assert [r["type"] for r in perl.results].count("plan") == 1
    assert "unknown" not in {r["type"] for r in perl.results}, perl.of_type("unknown")
    numbers = [t["number"] for t in perl.tests]
    assert numbers == list(range(1, len(numbers) + 1))
    kinds = [r["type"] for r in perl.results if r["type"] != "comment"]
    bail = kinds[-1] == "bailout"
    assert kinds[-2 if bail else -1] == "plan", "the plan must close the document"
    plan = perl.of_type("plan")[0]
    assert plan["tests_planned"] == len(numbers)
    # Every YAML block follows a test point directly and parses as YAML too.
    yaml = yaml_module()
    for index, result in enumerate(perl.results):
        if result["type"] == "yaml":
            assert perl.results[index - 1]["type"] == "test"
            if yaml is not None:
                raw = "".join(f"{line[2:]}\n" for line in result["raw"].split("\n")[1:-1])
                assert stringify(yaml.safe_load(raw)) == result["data"]

    tappy = tappy_read(text)
    found = Read(text, perl, tappy)
    tests = found.tappy_tests
    assert [t.number for t in tests] == numbers
    assert [t.ok for t in tests] == [t["ok"] for t in perl.tests]
    for mine, theirs in zip(tests, perl.tests, strict=True):
        if "#" not in theirs["description"]:  # tap.py cuts a description at any '#'
            assert f"- {mine.description.removeprefix('- ')}" == theirs["description"]
            assert mine.skip == (theirs["directive"] == "SKIP")
            assert mine.todo == (theirs["directive"] == "TODO")
    assert [line.category for line in tappy].count("plan") == 1
    assert ("bail" in [line.category for line in tappy]) == bail
    return found


def stringify(value: Any) -> Any:
    """PyYAML's typed values as YAMLish's strings, for comparing the two readings."""
    if isinstance(value, dict):
        return {k: stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [stringify(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, int):
        return str(value)
    return value


# --------------------------------------------------------------------------- reports


def session(
    tests: Sequence[events.TestFinished],
    *,
    nodeids: Sequence[str] | None = None,
    collect_reports: Sequence[pytest.CollectReport] = (),
    aborted: bool = False,
    exit_code: int = 1,
    not_run: int | None = 0,
) -> Iterator[events.RunEvent]:
    yield events.RunStarted("run-1234", 2, "load", started_at=1_700_000_000.0)
    yield events.WorkerStarted("gw0", 101)
    yield events.WorkerStarted("gw1", 102)
    names = tuple(t.nodeid for t in tests) if nodeids is None else tuple(nodeids)
    yield events.CollectionFinished("gw0", names, tuple(collect_reports), (), ())
    yield from tests
    if not_run is not None:
        yield events.RunFinished(not_run, finished_at=1_700_000_004.0)
    yield events.SessionEnded(exit_code, aborted, finished_at=1_700_000_004.1)


def write(tmp_path: Path, stream: Iterator[events.RunEvent], name: str = "report.tap") -> Path:
    path = tmp_path / name
    writer = TapWriter(path)
    for event in stream:
        writer(event)
    return path


def written(tmp_path: Path, stream: Iterator[events.RunEvent]) -> Read:
    return read(write(tmp_path, stream).read_text(encoding="utf-8"))


def plain_report(
    nodeid: str,
    outcome: str = "passed",
    when: str = "call",
    longrepr: Any = None,
    sections: Sequence[tuple[str, str]] = (),
) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid,
        ("test_plain.py", 4, nodeid.rpartition("::")[2]),
        keywords={},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=longrepr,
        when=when,  # type: ignore[arg-type]
        sections=list(sections),
        duration=0.25,
    )


def plain_test(
    nodeid: str, outcome: str = "passed", longrepr: Any = None, **extra: Any
) -> events.TestFinished:
    """A test from hand-made reports: setup and teardown pass, the call has ``outcome``."""
    reports = (
        plain_report(nodeid, when="setup"),
        plain_report(nodeid, outcome, "call", longrepr),
        plain_report(nodeid, when="teardown"),
    )
    return events.TestFinished("gw1", nodeid, ("test_plain.py", 4, "t"), reports, **extra)


# --------------------------------------------------------------------------- suites

OUTCOMES = """
    import sys

    import pytest


    @pytest.fixture
    def broken_setup():
        raise ValueError("setup exploded")


    @pytest.fixture
    def broken_teardown():
        yield "value"
        raise RuntimeError("teardown exploded")


    def test_passes():
        assert True


    def test_fails_assertion():
        expected = {"a": 1, "b": 2}
        assert {"a": 1, "b": 3} == expected


    def test_fails_exception():
        raise KeyError("missing-key")


    def test_skip_imperative():
        pytest.skip("skipped from inside the test")


    @pytest.mark.skip(reason="skipped by marker")
    def test_skip_marker():
        pass


    @pytest.mark.xfail(reason="known bug")
    def test_xfail_marker():
        assert 0


    def test_xfail_imperative():
        pytest.xfail("imperative xfail")


    @pytest.mark.xfail(reason="fixed meanwhile", strict=False)
    def test_xpass():
        pass


    @pytest.mark.xfail(reason="must fail", strict=True)
    def test_xpass_strict():
        pass


    def test_setup_error(broken_setup):
        pass


    def test_teardown_error(broken_teardown):
        assert broken_teardown == "value"


    def test_fail_and_teardown_error(broken_teardown):
        assert broken_teardown == "other"


    def test_skip_then_teardown_error(broken_teardown):
        pytest.skip("skipped before the teardown fails")


    def test_output_in_failure():
        print("stdout line\\n\\n    indented after a blank line")
        print("stderr line", file=sys.stderr)
        assert 1 + 1 == 3
"""

PASSING = """
    import pytest


    def test_passes():
        pass


    @pytest.mark.skip(reason="not here")
    def test_skipped():
        pass


    @pytest.mark.xfail(reason="known bug")
    def test_xfails():
        assert 0


    @pytest.mark.xfail(reason="fixed meanwhile")
    def test_xpasses():
        pass


    @pytest.mark.parametrize("label", ["emoji-🙂", "日本"], ids=["emoji-🙂", "日本"])
    def test_unicode(label):
        assert label
"""

# --------------------------------------------------------------------------- tests


def test_every_outcome_kind_is_a_point_with_the_directive_tap_has_for_it(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    collected = run_inline(pytester, test_outcomes=OUTCOMES)
    doc = written(tmp_path, session(collected.all_finished()))
    perl = doc.perl
    assert len(perl.tests) == len(collected.nodeids) == 14

    def point(name: str) -> tuple[bool, str, str]:
        test = perl.test(collected.nodeid(name))
        return test["ok"], test["directive"], test["explanation"]

    assert point("test_passes") == (True, "", "")
    assert point("test_fails_assertion") == (False, "", "")
    assert point("test_fails_exception") == (False, "", "")
    assert point("test_skip_imperative") == (True, "SKIP", "skipped from inside the test")
    assert point("test_skip_marker") == (True, "SKIP", "skipped by marker")
    assert point("test_xfail_marker") == (False, "TODO", "known bug")
    assert point("test_xfail_imperative") == (False, "TODO", "imperative xfail")
    assert point("test_xpass") == (True, "TODO", "fixed meanwhile")
    assert point("test_xpass_strict") == (False, "", "")
    assert point("test_setup_error") == (False, "", "")
    assert point("test_teardown_error") == (False, "", ""), "a teardown error is a failure"
    assert point("test_fail_and_teardown_error") == (False, "", "")
    assert point("test_skip_then_teardown_error") == (False, "", ""), "pytest counts an error"
    # What a harness counts: TODO points never fail; everything red above does.
    failed = {perl.tests[n - 1]["description"] for n in perl.failed}
    assert failed == {
        f"- {collected.nodeid(n)}"
        for n in (
            "test_fails_assertion",
            "test_fails_exception",
            "test_xpass_strict",
            "test_setup_error",
            "test_teardown_error",
            "test_fail_and_teardown_error",
            "test_skip_then_teardown_error",
            "test_output_in_failure",
        )
    }
    for name in ("test_passes", "test_skip_marker", "test_xfail_marker", "test_xpass"):
        assert perl.yaml(collected.nodeid(name)) is None, name

    source = (pytester.path / "test_outcomes.py").read_text(encoding="utf-8").splitlines()
    assertion = perl.yaml(collected.nodeid("test_fails_assertion"))
    assert assertion is not None
    assert assertion["outcome"] == "failed"
    assert assertion["phase"] == "call"
    assert assertion["message"].startswith(
        "AssertionError: assert {'a': 1, 'b': 3} == {'a': 1, 'b': 2}"
    )
    assert assertion["file"] == "test_outcomes.py"
    assert source[int(assertion["line"]) - 1] == "def test_fails_assertion():", "1-based"
    assert assertion["worker"] in {"gw0", "gw1"}
    assert float(assertion["duration"]) >= 0
    assert assertion["at"]["file"].endswith("test_outcomes.py")
    assert "assert {" in source[int(assertion["at"]["line"]) - 1]
    assert ">       assert {" in assertion["details"]

    exception = perl.yaml(collected.nodeid("test_fails_exception"))
    assert exception is not None
    assert exception["message"] == "KeyError: 'missing-key'"

    setup = perl.yaml(collected.nodeid("test_setup_error"))
    assert setup is not None
    assert (setup["outcome"], setup["phase"]) == ("error", "setup")
    assert setup["message"] == "ValueError: setup exploded"

    teardown = perl.yaml(collected.nodeid("test_teardown_error"))
    assert teardown is not None
    assert (teardown["outcome"], teardown["phase"]) == ("error", "teardown")
    assert teardown["message"] == "RuntimeError: teardown exploded"

    both = perl.yaml(collected.nodeid("test_fail_and_teardown_error"))
    assert both is not None
    assert (both["outcome"], both["phase"]) == ("failed", "call")
    assert [(f["phase"], f["message"]) for f in both["more_failures"]] == [
        ("teardown", "RuntimeError: teardown exploded")
    ]

    skipped = perl.yaml(collected.nodeid("test_skip_then_teardown_error"))
    assert skipped is not None
    assert (skipped["outcome"], skipped["phase"]) == ("skipped", "teardown")
    assert skipped["message"] == "RuntimeError: teardown exploded"

    output = perl.yaml(collected.nodeid("test_output_in_failure"))
    assert output is not None
    assert output["stdout"] == "stdout line\n\n    indented after a blank line\n"
    assert output["stderr"] == "stderr line\n"

    strict = perl.yaml(collected.nodeid("test_xpass_strict"))
    assert strict is not None
    assert strict["message"] == "[XPASS(strict)] must fail"

    assert doc.lines[-2:] == [
        "# 1 passed, 5 failed, 2 error, 3 skipped, 2 xfailed, 1 xpassed",
        "1..14",
    ]
    result = prove(write(tmp_path, session(collected.all_finished()), "again.tap"))
    assert result.returncode != 0, result.stdout
    assert "Failed 8/14 subtests" in result.stdout + result.stderr


def test_a_passing_suite_passes_prove(pytester: pytest.Pytester, tmp_path: Path) -> None:
    # Unescaped ids, so that the emoji reaches the node id (pytest escapes it by default).
    pytester.makeini(
        "[pytest]\ndisable_test_id_escaping_and_forfeit_all_rights_to_community_support = true\n"
    )
    collected = run_inline(pytester, test_passing=PASSING)
    path = write(tmp_path, session(collected.all_finished(), exit_code=0))
    doc = read(path.read_text(encoding="utf-8"))
    assert len(doc.perl.tests) == 6
    assert doc.perl.test(collected.nodeid("[emoji-🙂]"))["ok"]
    result = prove(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Result: PASS" in result.stdout


def test_a_collection_error_is_a_failed_point(pytester: pytest.Pytester, tmp_path: Path) -> None:
    collected = run_inline(
        pytester,
        "--continue-on-collection-errors",
        test_fine="def test_fine():\n    pass\n",
        test_broken="import no_such_module_anywhere\n",
    )
    assert len(collected.collect_reports) == 1
    doc = written(
        tmp_path,
        session(
            collected.all_finished(),
            collect_reports=collected.collect_reports,
            aborted=True,
            exit_code=2,
        ),
    )
    first = doc.perl.tests[0]
    assert (first["number"], first["ok"]) == (1, False)
    assert first["description"] == "- ERROR collecting test_broken.py"
    block = doc.perl.yaml("ERROR collecting test_broken.py")
    assert block is not None
    assert (block["outcome"], block["phase"], block["file"]) == (
        "error",
        "collect",
        "test_broken.py",
    )
    assert "no_such_module_anywhere" in block["message"]
    assert "ModuleNotFoundError" in block["details"]
    assert doc.lines[-1].startswith("Bail out! run aborted (exit code 2)")
    assert "1 collection error" in doc.lines[-3]


def test_crashed_and_never_run_tests_fail_with_the_crash_text(tmp_path: Path) -> None:
    crashed_id = "test_plain.py::test_crashes"
    never_id = "test_plain.py::test_never_runs"
    location = ("test_plain.py", None, "test_crashes")
    crash_text = f"worker gw1 crashed while running {crashed_id} (killed by signal SIGKILL)"
    crashed = events.TestFinished(
        "gw1",
        crashed_id,
        location,
        (
            crash_report(crashed_id, location, crash_text, "Fatal Python error: Aborted\n", "call"),
            closing_report(crashed_id, location),
        ),
        origin="crash",
    )
    reason = "not run: workers crashed and --max-worker-restart (0) is exhausted"
    never = events.TestFinished(
        "-",
        never_id,
        ("test_plain.py", None, "test_never_runs"),
        (crash_report(never_id, location, reason, "", "setup"), closing_report(never_id, location)),
        origin="not-run",
    )
    stream = list(session([crashed, never]))
    stream.insert(-2, events.WorkerCrashed("gw1", -9, crashed_id, "Fatal Python error"))
    doc = written(tmp_path, iter(stream))

    assert [t["ok"] for t in doc.perl.tests] == [False, False]
    block = doc.perl.yaml(crashed_id)
    assert block is not None
    assert block["message"] == crash_text
    assert block["origin"] == "crash"
    assert block["phase"] == "call"
    assert block["worker"] == "gw1"
    assert "line" not in block, "a crashed test has no known line"
    assert block["stderr"] == "Fatal Python error: Aborted\n"
    never_block = doc.perl.yaml(never_id)
    assert never_block is not None
    assert (never_block["origin"], never_block["phase"], never_block["outcome"]) == (
        "not-run",
        "setup",
        "error",
    )
    assert never_block["message"] == reason
    comments = [r["raw"] for r in doc.perl.of_type("comment")]
    assert f"# worker gw1 crashed while running {crashed_id} (killed by signal SIGKILL)" in comments


def test_a_flaky_test_is_ok_and_says_so_in_its_block(tmp_path: Path) -> None:
    failing = (
        plain_report("test_plain.py::test_flaky", when="setup"),
        plain_report("test_plain.py::test_flaky", "failed", "call", "AssertionError: first"),
        plain_report("test_plain.py::test_flaky", when="teardown"),
    )
    flaky = plain_test("test_plain.py::test_flaky", attempts=(events.Attempt("gw0", failing),))
    still = plain_test(
        "test_plain.py::test_still_fails",
        "failed",
        "AssertionError: third",
        attempts=(events.Attempt("gw0", failing), events.Attempt("gw1", failing)),
    )
    path = write(tmp_path, session([flaky, still]))
    doc = read(path.read_text(encoding="utf-8"))

    assert [t["ok"] for t in doc.perl.tests] == [True, False]
    assert doc.perl.tests[0]["description"] == "- test_plain.py::test_flaky"
    assert doc.perl.tests[0]["directive"] == ""
    block = doc.perl.yaml("test_plain.py::test_flaky")
    assert block is not None
    assert block["flaky"] == "true"
    assert block["attempts"] == "2"
    assert block["message"] == "flaky: passed on attempt 2"
    assert block["earlier_attempts"] == [
        {
            "worker": "gw0",
            "outcome": "failed",
            "phase": "call",
            "message": "AssertionError: first",
            "duration": "0.750000",
        }
    ]
    still_block = doc.perl.yaml("test_plain.py::test_still_fails")
    assert still_block is not None
    assert (still_block["flaky"], still_block["attempts"]) == ("false", "3")
    assert len(still_block["earlier_attempts"]) == 2
    assert "1 flaky" in doc.lines[-2]

    only_flaky = write(tmp_path, session([flaky], exit_code=0), "flaky.tap")
    assert prove(only_flaky).returncode == 0


def test_an_aborted_run_bails_out_after_the_plan(tmp_path: Path) -> None:
    tests = [plain_test("test_plain.py::test_a"), plain_test("test_plain.py::test_b")]
    nodeids = [t.nodeid for t in tests] + ["test_plain.py::test_c", "test_plain.py::test_d"]
    path = write(tmp_path, session(tests, nodeids=nodeids, aborted=True, not_run=None))
    doc = read(path.read_text(encoding="utf-8"))
    assert doc.lines[-2:] == ["1..2", "Bail out! run aborted (exit code 1): 2 tests not run"]
    assert doc.perl.of_type("bailout")[0]["explanation"] == (
        "run aborted (exit code 1): 2 tests not run"
    )
    assert [line.category for line in doc.tappy][-1] == "bail"
    result = prove(path)
    assert result.returncode != 0
    assert "Further testing stopped" in result.stdout + result.stderr

    counted = write(
        tmp_path, session(tests, nodeids=nodeids, aborted=True, not_run=5), "counted.tap"
    )
    assert counted.read_text(encoding="utf-8").endswith("5 tests not run\n")


def test_a_run_without_tests_plans_none(tmp_path: Path) -> None:
    path = write(tmp_path, session([], exit_code=5))
    doc = read(path.read_text(encoding="utf-8"))
    assert doc.lines[-1] == "1..0 # SKIP no tests ran"
    assert prove(path).returncode == 0


NASTY = "test_plain.py::test_names[a#b\\#c\x00\x1b[31m\x08\n\r\t\x7f\x85\u2028\ud800-🙂-日本]"


def test_hashes_controls_and_emoji_in_names_and_text_keep_the_stream_well_formed(
    tmp_path: Path,
) -> None:
    skip = plain_test(
        NASTY + "skip", "skipped", ("test_plain.py", 4, "Skipped: why #1\nsecond line \x00")
    )
    message = "AssertionError: bad \x00 \x1b[31mred\x1b[0m \x7f 🙂 \"quoted\" 'single' \\ # x"
    text = "first\n\tindented by a tab\r\nnext\n...\n" + message
    failing = plain_test(NASTY, "failed", text)
    doc = written(tmp_path, session([skip, failing]))

    expected_name = (
        "test_plain.py::test_names[a\\#b\\\\\\#c\\x00\\x1b[31m\\x08\\n\\r\\t\\x7f\\x85"
        "\\u2028\\ud800-🙂-日本]"
    )
    assert description(NASTY) == expected_name
    first, second = doc.perl.tests
    assert first["description"] == f"- {expected_name}skip"
    assert (first["ok"], first["directive"], first["explanation"]) == (
        True,
        "SKIP",
        "why #1\\nsecond line \\x00",
    )
    assert second["description"] == f"- {expected_name}"
    assert (second["ok"], second["directive"]) == (False, "")
    block = doc.perl.yaml(NASTY)
    assert block is not None
    assert block["message"] == (
        "AssertionError: bad \\x00 \\x1b[31mred\\x1b[0m \\x7f 🙂 \"quoted\" 'single' \\ # x"
    )
    assert block["details"] == "first\n\tindented by a tab\r\nnext\n...\n" + block["message"]
    # tap.py still sees two points, the right status for each, and nothing unknown
    # outside the YAML block; it cuts descriptions at the first '#', escaped or not.
    assert [(t.number, t.ok) for t in doc.tappy_tests] == [(1, True), (2, False)]


@pytest.mark.parametrize(
    "text",
    [
        "    def test():\n>       assert 0\nE       assert 0\n",
        "first\n\n  indented   \n    \nlast",
        "first\n\tby tab\n",
        "first\n...\n",
        "first\n  ... indented dots\n",
        "one line",
        "",
        "crlf\r\nline\r\n",
        "# not a comment\n- not a list\nkey: not a key\n'quotes\" and \\ backslash\n",
        "first\n\u3000ideographic space\n",
        "🙂\n日本\n",
        "x" * 30 + "\n" + " " * 8 + "\n",
    ],
)
def test_text_in_a_yaml_block_reads_back_exactly(text: str) -> None:
    lines = ["TAP version 13", "not ok 1 - text", *diagnostic_block({"text": text}), "1..1"]
    doc = read("\n".join(lines) + "\n")
    data = doc.perl.of_type("yaml")[0]["data"]
    block = "  text: |" in lines  # a literal block scalar ends with exactly one newline
    assert data["text"] == (text.rstrip("\n") + "\n" if block else text)


def test_streaming_writes_each_point_as_its_test_finishes(
    pytester: pytest.Pytester, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    collected = run_inline(pytester, test_outcomes=OUTCOMES)
    capsys.readouterr()
    stream = list(session(collected.all_finished()))
    writer = TapWriter(None)
    seen = ""
    for event in stream:
        writer(event)
        now = capsys.readouterr().out
        if isinstance(event, events.TestFinished):
            assert now.startswith(("ok ", "not ok ")), "the point was not written at once"
            assert f" - {event.nodeid}" in now.splitlines()[0]
        seen += now
    assert seen == write(tmp_path, iter(stream)).read_text(encoding="utf-8")
    read(seen)


def test_streaming_escapes_what_standard_output_cannot_encode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = io.BytesIO()
    ascii_out = io.TextIOWrapper(buffer, encoding="ascii")
    monkeypatch.setattr("sys.stdout", ascii_out)
    writer = TapWriter(None)
    for event in session([plain_test("test_plain.py::test_emoji[🙂]")], exit_code=0):
        writer(event)
    ascii_out.flush()
    text = buffer.getvalue().decode("ascii")
    assert "ok 1 - test_plain.py::test_emoji[\\U0001f642]\n" in text
    read(text)
