"""Shared helpers of the acceptance tests.

Every acceptance test runs pytest in a real subprocess (``pytester.runpytest_subprocess``)
with ``-p parallel_exec``, because the plugin's promise is about what a user sees from a
real command line: exit code, terminal summary and ``--junitxml`` must be those of a
serial run.  The helpers here turn one such run into an ``Observation`` (everything the
fidelity promise covers, with only run-to-run noise such as times removed) so that a test
can compare a parallel run with a serial one field by field and get a readable diff.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from child_env import INHERITED_VARIABLES

pytest_plugins = ["pytester"]

#: How every run loads the plugin (it has no auto-loading entry point on purpose).
PLUGIN_ARGS: tuple[str, ...] = ("-p", "parallel_exec")
#: A hung run must fail the test, not the whole CI job.
RUN_TIMEOUT = 120.0


#: Attributes that legitimately differ between two runs of the same suite.
IGNORED_SUITE_ATTRIBUTES = frozenset({"time", "timestamp", "hostname"})
IGNORED_CASE_ATTRIBUTES = frozenset({"time"})

SUMMARY_HEADER = re.compile(r"^=+ short test summary info =+$")
WARNINGS_HEADER = re.compile(r"^=+ warnings summary =+$")
COLLECT_ERROR_HEADER = re.compile(r"^_+ ERROR collecting (?P<what>.+?) _+$")
#: Output that a parallel run must not show unless the serial run of the suite does.
ALARMS = ("INTERNALERROR", "worker crashed")
#: ``<Foo object at 0x7f...>`` in a traceback body differs between any two processes.
OBJECT_ADDRESS = re.compile(r" at 0x[0-9a-f]+>")


# --------------------------------------------------------------------------- junit


@dataclass(frozen=True)
class JunitCase:
    """One ``<testcase>``, normalized: attributes without ``time``, children in order.

    Children are kept as ``(tag, sorted attributes, text)`` with their own children
    (``<property>`` inside ``<properties>``) flattened after them, so failure messages,
    types, properties and captured output are all compared exactly.  Only element text
    (a failure's traceback) has object addresses masked: they differ between any two
    processes, serial or not.
    """

    key: str
    attributes: tuple[tuple[str, str], ...]
    children: tuple[tuple[str, tuple[tuple[str, str], ...], str], ...]

    @property
    def properties(self) -> dict[str, str]:
        """``record_property`` values, by name."""
        return {
            dict(attrs)["name"]: dict(attrs).get("value", "")
            for tag, attrs, _ in self.children
            if tag == "property"
        }

    def message(self, tag: str) -> str:
        """The ``message`` of this case's first ``<failure>``/``<error>``/``<skipped>``."""
        found = [dict(attrs) for child_tag, attrs, _ in self.children if child_tag == tag]
        assert found, f"{self.key} has no <{tag}>"
        return found[0].get("message", "")

    @property
    def outcome(self) -> str:
        """The test's outcome as read from its result elements (``passed`` if none)."""
        words = [_outcome_word(tag, dict(attrs)) for tag, attrs, _ in self.children]
        found = [w for w in words if w]
        return "+".join(found) or "passed"


def _outcome_word(tag: str, attributes: dict[str, str]) -> str:
    message = attributes.get("message", "")
    if tag == "failure":
        return "failed"
    if tag == "error":
        if message.startswith("failed on setup"):
            return "error-in-setup"
        if message.startswith("failed on teardown"):
            return "error-in-teardown"
        return "error"
    if tag == "skipped":
        return "xfailed" if attributes.get("type") == "pytest.xfail" else "skipped"
    return ""


def _flatten(element: ET.Element) -> list[tuple[str, tuple[tuple[str, str], ...], str]]:
    rows = []
    for child in element:
        attributes = tuple(sorted(child.attrib.items()))
        text = OBJECT_ADDRESS.sub(" at 0x...>", child.text or "")
        rows.append((child.tag, attributes, text))
        rows.extend(_flatten(child))
    return rows


def _case(element: ET.Element) -> JunitCase:
    attributes = tuple(
        sorted((k, v) for k, v in element.attrib.items() if k not in IGNORED_CASE_ATTRIBUTES)
    )
    key = f"{element.get('classname', '')}::{element.get('name', '')}"
    return JunitCase(key=key, attributes=attributes, children=tuple(_flatten(element)))


@dataclass(frozen=True)
class JunitReport:
    """A parsed ``--junitxml`` file: the suite and its test cases keyed by name.

    ``order`` keeps the document order of the test cases: a serial run writes them in
    collection order, and so must a parallel one.
    """

    suite: dict[str, str]
    suite_properties: tuple[tuple[str, str], ...]
    cases: dict[str, list[JunitCase]]
    order: tuple[str, ...]

    @classmethod
    def parse(cls, path: Path) -> JunitReport:
        root = ET.parse(path).getroot()
        suite_element = root if root.tag == "testsuite" else root.find("testsuite")
        assert suite_element is not None, f"no <testsuite> in {path}"
        suite = {k: v for k, v in suite_element.attrib.items() if k not in IGNORED_SUITE_ATTRIBUTES}
        properties = tuple(
            (p.get("name", ""), p.get("value", ""))
            for p in suite_element.findall("properties/property")
        )
        cases: dict[str, list[JunitCase]] = {}
        order: list[str] = []
        for element in suite_element.iter("testcase"):
            case = _case(element)
            cases.setdefault(case.key, []).append(case)
            order.append(case.key)
        for same_key in cases.values():
            same_key.sort(key=repr)
        return cls(suite, properties, dict(sorted(cases.items())), tuple(order))

    @property
    def all_cases(self) -> list[JunitCase]:
        return [case for cases in self.cases.values() for case in cases]

    @property
    def outcomes(self) -> dict[str, str]:
        """Test key -> outcome; a test reported twice shows as ``outcome,outcome``."""
        return {key: ",".join(c.outcome for c in cases) for key, cases in self.cases.items()}

    def case(self, key_suffix: str) -> JunitCase:
        """The single test case whose key ends with ``key_suffix``."""
        found = [c for key, cs in self.cases.items() if key.endswith(key_suffix) for c in cs]
        assert len(found) == 1, f"expected one testcase ending with {key_suffix!r}: {found}"
        return found[0]


# --------------------------------------------------------------------------- runs


def output_of(result: pytest.RunResult) -> str:
    """Everything a run printed, stdout then stderr (usage errors go to stderr)."""
    return "\n".join(result.outlines + result.errlines)


def summary_counts(result: pytest.RunResult) -> dict[str, int]:
    """``parseoutcomes()``, or ``{}`` for a run that printed no summary line (exit 4)."""
    try:
        return result.parseoutcomes()
    except ValueError:
        return {}


def section_lines(lines: list[str], header: re.Pattern[str], end: str) -> tuple[str, ...]:
    """The lines of one terminal section, sorted (a parallel run reports in finish order)."""
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        return ()
    body: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith(end):
            break
        body.append(line)
    return tuple(sorted(body))


def short_summary_lines(lines: list[str]) -> tuple[str, ...]:
    """The ``-r`` short test summary lines, sorted."""
    return section_lines(lines, SUMMARY_HEADER, "=")


def warning_summary_lines(lines: list[str]) -> tuple[str, ...]:
    """The warnings summary (locations, messages, source lines), sorted."""
    return section_lines(lines, WARNINGS_HEADER, "-- Docs:")


def collection_error_headers(lines: list[str]) -> tuple[str, ...]:
    """What the ``ERROR collecting ...`` section headers name, sorted."""
    found = (COLLECT_ERROR_HEADER.match(line) for line in lines)
    return tuple(sorted(m.group("what") for m in found if m))


@dataclass(frozen=True)
class Observation:
    """Everything the fidelity promise covers, taken from one finished run."""

    label: str
    exit_code: int
    counts: dict[str, int]
    short_summary: tuple[str, ...]
    warning_summary: tuple[str, ...]
    collection_errors: tuple[str, ...]
    junit: JunitReport | None
    result: pytest.RunResult

    @property
    def output(self) -> str:
        return output_of(self.result)

    @property
    def outcomes(self) -> dict[str, str]:
        assert self.junit is not None, f"{self.label}: no junit report was written"
        return self.junit.outcomes

    def differences_from(self, serial: Observation) -> list[str]:
        """How this (parallel) run differs from ``serial``; empty when it does not."""
        return differences(serial, self)


def _multiset_difference(serial: Sequence[str], parallel: Sequence[str]) -> list[str]:
    missing = Counter(serial) - Counter(parallel)
    extra = Counter(parallel) - Counter(serial)
    return [f"    only serial:   {line}" for line in sorted(missing.elements())] + [
        f"    only parallel: {line}" for line in sorted(extra.elements())
    ]


def _junit_differences(serial: JunitReport, parallel: JunitReport) -> list[str]:
    found: list[str] = []
    if parallel.suite != serial.suite:
        found.append(f"<testsuite> attributes: serial {serial.suite} != parallel {parallel.suite}")
    if parallel.suite_properties != serial.suite_properties:
        found.append(
            f"<testsuite> properties: serial {serial.suite_properties} "
            f"!= parallel {parallel.suite_properties}"
        )
    for key in sorted(set(serial.cases) | set(parallel.cases)):
        mine, theirs = serial.cases.get(key), parallel.cases.get(key)
        if mine != theirs:
            found.append(f"<testcase> {key}:\n    serial:   {mine}\n    parallel: {theirs}")
    if set(parallel.order) == set(serial.order) and parallel.order != serial.order:
        found.append(
            "<testcase> order:\n    serial:   "
            + ", ".join(serial.order)
            + "\n    parallel: "
            + ", ".join(parallel.order)
        )
    return found


def differences(serial: Observation, parallel: Observation) -> list[str]:
    """Every way ``parallel`` is not what ``serial`` was, one readable entry each.

    All fields are compared before failing, so that one failing run shows every
    divergence at once instead of only the first.
    """
    found: list[str] = []
    if parallel.exit_code != serial.exit_code:
        found.append(f"exit code: serial {serial.exit_code} != parallel {parallel.exit_code}")
    if parallel.counts != serial.counts:
        found.append(f"summary counts: serial {serial.counts} != parallel {parallel.counts}")
    if parallel.collection_errors != serial.collection_errors:
        found.append(
            f"collection errors: serial {serial.collection_errors} "
            f"!= parallel {parallel.collection_errors}"
        )
    lines = _multiset_difference(serial.short_summary, parallel.short_summary)
    if lines:
        found.append("short test summary lines:\n" + "\n".join(lines))
    lines = _multiset_difference(serial.warning_summary, parallel.warning_summary)
    if lines:
        found.append("warnings summary lines:\n" + "\n".join(lines))
    if (serial.junit is None) != (parallel.junit is None):
        found.append(
            f"junit written: serial {serial.junit is not None}, parallel "
            f"{parallel.junit is not None}"
        )
    elif serial.junit is not None and parallel.junit is not None:
        outcomes = _multiset_difference(
            [f"{k} -> {v}" for k, v in serial.junit.outcomes.items()],
            [f"{k} -> {v}" for k, v in parallel.junit.outcomes.items()],
        )
        if outcomes:
            found.append("per-test outcomes:\n" + "\n".join(outcomes))
        found.extend(_junit_differences(serial.junit, parallel.junit))
    for alarm in ALARMS:
        if alarm in parallel.output and alarm not in serial.output:
            found.append(f"the parallel run printed {alarm!r}")
    return found


def assert_same_results(serial: Observation, parallel: Observation) -> None:
    """Fail listing every difference between a parallel run and the serial one."""
    found = differences(serial, parallel)
    if found:
        pytest.fail(
            f"{parallel.label} differs from the serial run:\n" + "\n".join(found), pytrace=False
        )


class PluginRunner:
    """Runs pytest with ``-p parallel_exec`` in a subprocess inside a ``pytester`` dir."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self._runs = 0

    def run(
        self, *args: str, workers: int | None = None, timeout: float = RUN_TIMEOUT
    ) -> pytest.RunResult:
        """Run once; ``workers=None`` is the serial run of the same command (no ``-n``)."""
        worker_args = ("-n", str(workers)) if workers is not None else ()
        return self.pytester.runpytest_subprocess(
            *PLUGIN_ARGS, *worker_args, *args, timeout=timeout
        )

    def command(self, *args: str, workers: int | None = None) -> list[str]:
        """The command line of a run, for tests that drive the process themselves."""
        worker_args = ["-n", str(workers)] if workers is not None else []
        return [sys.executable, "-m", "pytest", *PLUGIN_ARGS, *worker_args, *args]

    def junit_path(self, label: str) -> Path:
        self._runs += 1
        reports = self.pytester.path / "reports"
        reports.mkdir(exist_ok=True)
        return reports / f"{self._runs:02d}-{label}.xml"

    def observe(self, *args: str, workers: int | None = None) -> Observation:
        """Run with ``-rA`` and ``--junitxml`` and collect what the promise compares."""
        label = "serial" if workers is None else f"-n {workers}"
        junit = self.junit_path(label.replace(" ", ""))
        result = self.run("-rA", f"--junitxml={junit}", *args, workers=workers)
        return Observation(
            label=label,
            exit_code=int(result.ret),
            counts=summary_counts(result),
            short_summary=short_summary_lines(result.outlines),
            warning_summary=warning_summary_lines(result.outlines),
            collection_errors=collection_error_headers(result.outlines),
            junit=JunitReport.parse(junit) if junit.exists() else None,
            result=result,
        )

    @staticmethod
    def header_lines(result: pytest.RunResult) -> list[str]:
        """The session header: the lines before ``collected ...``."""
        lines: list[str] = []
        for line in result.outlines:
            if line.startswith(("collected ", "collecting ")):
                break
            lines.append(line)
        return lines

    output = staticmethod(output_of)

    @staticmethod
    def assert_no_traceback(result: pytest.RunResult) -> None:
        """A usage or run error must be a message, never a traceback or INTERNALERROR."""
        output = output_of(result)
        assert "INTERNALERROR" not in output, output
        assert "Traceback (most recent call last)" not in output, output

    def assert_fidelity(self, *args: str, workers: int) -> tuple[Observation, Observation]:
        """Run serially and with ``-n workers``; assert the results are the same."""
        serial = self.observe(*args)
        parallel = self.observe(*args, workers=workers)
        assert_same_results(serial, parallel)
        return serial, parallel


@pytest.fixture
def runner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> PluginRunner:
    """A ``PluginRunner`` whose runs do not inherit this session's worker environment."""
    for name in INHERITED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return PluginRunner(pytester)


# --------------------------------------------------------------------------- the zoo

ZOO_CONFTEST = """
    import pytest


    @pytest.fixture(scope="session")
    def session_resource():
        yield {"name": "zoo-session"}


    @pytest.fixture
    def broken_setup():
        raise ValueError("setup exploded")


    @pytest.fixture
    def broken_teardown():
        yield "value"
        raise RuntimeError("teardown exploded")
"""

ZOO_INI = """
    [pytest]
    junit_logging = all
    junit_suite_name = zoo
"""

ZOO_OUTCOMES = """
    import logging
    import sys
    import warnings

    import pytest


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
        raise AssertionError("never runs")


    @pytest.mark.skipif(sys.platform != "no-such-platform", reason="skipped by condition")
    def test_skipif():
        raise AssertionError("never runs")


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


    @pytest.mark.xfail(raises=TypeError, reason="only TypeError is expected")
    def test_xfail_wrong_exception():
        raise ValueError("not a TypeError")


    def test_setup_error(broken_setup):
        pass


    def test_teardown_error(broken_teardown):
        assert broken_teardown == "value"


    def test_fail_and_teardown_error(broken_teardown):
        assert broken_teardown == "other"


    def test_record_property(record_property, record_testsuite_property):
        record_property("answer", 42)
        record_property("städte", "Zürich [CH]")
        record_testsuite_property("zoo-suite", "recorded [once]")


    def test_warns():
        warnings.warn("zoo user warning", UserWarning)


    def test_warns_deprecation():
        warnings.warn("zoo deprecated thing", DeprecationWarning)


    def test_logging_in_failure():
        logging.getLogger("zoo.logger").warning("log line from a failing test")
        logging.getLogger("zoo.logger").error("second log line")
        assert False, "failed after logging"


    def test_output_in_failure():
        print("stdout line from a failing test")
        print("stderr line from a failing test", file=sys.stderr)
        assert 1 + 1 == 3


    def test_output_in_pass():
        print("stdout from a passing test")
        print("stderr from a passing test", file=sys.stderr)


    def test_deselected_by_k():
        raise AssertionError("deselected with -k")


    def test_deselected_by_option():
        raise AssertionError("deselected with --deselect")
"""

ZOO_FIXTURES = """
    import pytest


    @pytest.fixture(scope="module")
    def module_resource():
        resource = {"open": True}
        yield resource
        resource["open"] = False


    @pytest.fixture(scope="module")
    def module_setup_fails():
        raise RuntimeError("module fixture cannot start")


    @pytest.fixture(scope="class")
    def class_resource():
        return {"scope": "class"}


    class TestClassScope:
        def test_first(self, class_resource, session_resource):
            assert session_resource["name"] == "zoo-session"

        def test_second(self, class_resource):
            assert class_resource["scope"] == "class"

        def test_third(self, class_resource):
            assert class_resource["scope"] == "module", "wrong scope on purpose"


    def test_module_resource_a(module_resource):
        assert module_resource["open"]


    def test_module_resource_b(module_resource):
        assert module_resource["open"]


    def test_module_setup_error_a(module_setup_fails):
        pass


    def test_module_setup_error_b(module_setup_fails):
        pass


    def test_session_resource(session_resource):
        assert session_resource == {"name": "zoo-session"}


    class TestParametrizedInClass:
        @pytest.fixture(autouse=True)
        def per_test(self):
            yield

        @pytest.mark.parametrize("value", [1, 2, 3])
        def test_value(self, value):
            assert value < 3
"""

ZOO_PARAMS = """
    import time
    import warnings

    import pytest

    warnings.warn("zoo import-time warning")


    @pytest.mark.parametrize("label", ["ü-[x]", "[brackets]", "with space", "日本-[1]"])
    def test_unicode_values(label):
        assert label


    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(1, id="ü-[x]"),
            pytest.param(2, id="a[b]c"),
            pytest.param(3, id="emoji-🙂"),
        ],
    )
    def test_unicode_ids(value):
        assert value != 3, "the emoji case fails"


    @pytest.mark.parametrize("n", range(16))
    def test_spread(n):
        time.sleep(0.03)
        assert n != 13, "thirteen is unlucky"


    @pytest.mark.zoo_unregistered
    def test_unknown_mark():
        pass
"""

ZOO_UNITTEST = """
    import unittest


    class ZooTestCase(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.shared = [1, 2, 3]

        def test_ok(self):
            self.assertEqual(len(self.shared), 3)

        def test_fails(self):
            self.assertEqual(self.shared, [1, 2, 4])

        @unittest.skip("unittest skip decorator")
        def test_skipped(self):
            raise AssertionError("never runs")

        def test_skip_inside(self):
            self.skipTest("skipTest called")

        @unittest.expectedFailure
        def test_expected_failure(self):
            self.assertTrue(False)
"""

ZOO_DOCTESTS = '''
    """Doctests, collected with --doctest-modules.

    >>> 1 + 1
    2
    """


    def add(a, b):
        """
        >>> add(1, 2)
        3
        """
        return a + b


    def broken():
        """
        >>> broken()
        'expected'
        """
        return "actual"
'''

#: How the zoo is run: doctests on, one test deselected each way.
ZOO_ARGS: tuple[str, ...] = (
    "--doctest-modules",
    "-k",
    "not deselected_by_k",
    "--deselect",
    "test_zoo_outcomes.py::test_deselected_by_option",
)


@pytest.fixture
def zoo(pytester: pytest.Pytester) -> tuple[str, ...]:
    """Write a suite with every outcome kind pytest has; return the args to run it with."""
    pytester.makeconftest(ZOO_CONFTEST)
    pytester.makeini(ZOO_INI)
    pytester.makepyfile(
        test_zoo_outcomes=ZOO_OUTCOMES,
        test_zoo_fixtures=ZOO_FIXTURES,
        test_zoo_params=ZOO_PARAMS,
        test_zoo_unittest=ZOO_UNITTEST,
        zoo_doctests=ZOO_DOCTESTS,
    )
    return ZOO_ARGS
