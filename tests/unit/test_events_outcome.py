"""``TestFinished.outcome``/``duration`` on real ``pytest.TestReport`` objects; ``EventStream``.

Two sources of reports: ones built with ``pytest.TestReport`` exactly as pytest's runner
and skipping plugin shape them, and ones produced by a real (in-process) pytest run of a
small test module, where pytest's own terminal statistics say how the summary counts
each test.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from parallel_exec.reporting import events

NODE = "test_mod.py::test_it"
LOCATION = ("test_mod.py", 3, "test_it")


def report(when: str, outcome: str, duration: float = 0.0, **extra: Any) -> pytest.TestReport:
    longrepr: Any = None
    if outcome == "failed":
        longrepr = "AssertionError: boom"
    elif outcome == "skipped":
        longrepr = ("test_mod.py", 3, "Skipped: because")
    return pytest.TestReport(
        nodeid=NODE,
        location=LOCATION,
        keywords={"test_it": 1},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=longrepr,
        when=when,  # type: ignore[arg-type]
        duration=duration,
        **extra,
    )


def finished(*reports: pytest.TestReport) -> events.TestFinished:
    return events.TestFinished(worker_id="gw0", nodeid=NODE, location=LOCATION, reports=reports)


BUILT: dict[str, tuple[tuple[pytest.TestReport, ...], str]] = {
    "passed": (
        (report("setup", "passed"), report("call", "passed"), report("teardown", "passed")),
        "passed",
    ),
    "failed call": (
        (report("setup", "passed"), report("call", "failed"), report("teardown", "passed")),
        "failed",
    ),
    "setup error": ((report("setup", "failed"), report("teardown", "passed")), "error"),
    "teardown error after pass": (
        (report("setup", "passed"), report("call", "passed"), report("teardown", "failed")),
        "error",
    ),
    "failed call and teardown error": (
        (report("setup", "passed"), report("call", "failed"), report("teardown", "failed")),
        "failed",
    ),
    "skipped in setup": ((report("setup", "skipped"), report("teardown", "passed")), "skipped"),
    "skipped in call": (
        (report("setup", "passed"), report("call", "skipped"), report("teardown", "passed")),
        "skipped",
    ),
    "xfailed": (
        (
            report("setup", "passed"),
            report("call", "skipped", wasxfail="known bug"),
            report("teardown", "passed"),
        ),
        "xfailed",
    ),
    "xpassed": (
        (
            report("setup", "passed"),
            report("call", "passed", wasxfail="known bug"),
            report("teardown", "passed"),
        ),
        "xpassed",
    ),
    "strict xpass": (
        (report("setup", "passed"), report("call", "failed"), report("teardown", "passed")),
        "failed",
    ),
    "xfail run=False (skipped in setup with wasxfail)": (
        (report("setup", "skipped", wasxfail="[NOTRUN] never"), report("teardown", "passed")),
        "xfailed",
    ),
    "crashed (controller-made reports)": (
        (report("call", "failed"), report("teardown", "passed")),
        "failed",
    ),
    "not run (controller-made reports)": (
        (report("setup", "failed"), report("teardown", "passed")),
        "error",
    ),
}


@pytest.mark.parametrize(("reports", "outcome"), BUILT.values(), ids=BUILT.keys())
def test_outcome_of_built_reports(reports: tuple[pytest.TestReport, ...], outcome: str) -> None:
    assert finished(*reports).outcome == outcome


def test_duration_sums_every_phase() -> None:
    test = finished(
        report("setup", "passed", duration=0.25),
        report("call", "passed", duration=1.5),
        report("teardown", "passed", duration=0.125),
    )
    assert test.duration == pytest.approx(1.875)


def test_duration_of_no_reports_is_zero() -> None:
    assert finished().duration == 0.0
    assert finished().outcome == "passed"


def test_test_finished_is_not_collected_as_a_test_class() -> None:
    assert events.TestFinished.__test__ is False


# ---------------------------------------------------------------------------- a real run

SAMPLE = """
import pytest

@pytest.fixture
def broken_setup():
    raise RuntimeError("in setup")

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("in teardown")

@pytest.fixture
def xfail_in_setup():
    pytest.xfail("imperative, in a fixture")

def test_passed():
    pass

def test_failed():
    assert 1 == 2

def test_setup_error(broken_setup):
    pass

def test_teardown_error(broken_teardown):
    pass

def test_failed_and_teardown_error(broken_teardown):
    assert 1 == 2

@pytest.mark.skip(reason="marked")
def test_skipped_in_setup():
    pass

def test_skipped_in_call():
    pytest.skip("imperative")

@pytest.mark.xfail(reason="known")
def test_xfailed():
    assert 1 == 2

@pytest.mark.xfail(reason="known")
def test_xpassed():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_xpassed_strict():
    pass

@pytest.mark.xfail(raises=KeyError)
def test_xfail_wrong_exception():
    raise ValueError("not the expected one")

def test_imperative_xfail():
    pytest.xfail("imperative")

@pytest.mark.xfail(reason="never run", run=False)
def test_xfail_not_run():
    pass

def test_xfail_in_fixture(xfail_in_setup):
    pass
"""

#: test name -> (our one word, the categories pytest's terminal summary counts it in)
EXPECTED: dict[str, tuple[str, set[str]]] = {
    "test_passed": ("passed", {"passed"}),
    "test_failed": ("failed", {"failed"}),
    "test_setup_error": ("error", {"error"}),
    "test_teardown_error": ("error", {"passed", "error"}),
    "test_failed_and_teardown_error": ("failed", {"failed", "error"}),
    "test_skipped_in_setup": ("skipped", {"skipped"}),
    "test_skipped_in_call": ("skipped", {"skipped"}),
    "test_xfailed": ("xfailed", {"xfailed"}),
    "test_xpassed": ("xpassed", {"xpassed"}),
    "test_xpassed_strict": ("failed", {"failed"}),
    "test_xfail_wrong_exception": ("failed", {"failed"}),
    "test_imperative_xfail": ("xfailed", {"xfailed"}),
    "test_xfail_not_run": ("xfailed", {"xfailed"}),
    "test_xfail_in_fixture": ("xfailed", {"xfailed"}),
}


class ReportCollector:
    """A plugin for the inner run: every test report, and pytest's own tally."""

    def __init__(self) -> None:
        self.reports: dict[str, list[pytest.TestReport]] = defaultdict(list)
        self.categories: dict[str, set[str]] = defaultdict(set)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports[report.nodeid].append(report)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for category, reports in terminalreporter.stats.items():
            for item in reports:
                nodeid = getattr(item, "nodeid", None)
                if category and nodeid:
                    self.categories[nodeid].add(category)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> ReportCollector:
    directory: Path = tmp_path_factory.mktemp("outcomes")
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / "sample_outcomes.py").write_text(textwrap.dedent(SAMPLE))
    collector = ReportCollector()
    pytest.main(
        [
            str(directory / "sample_outcomes.py"),
            "-q",
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            f"--rootdir={directory}",
        ],
        plugins=[collector],
    )
    return collector


@pytest.mark.parametrize("name", EXPECTED)
def test_outcome_matches_a_real_run(real_run: ReportCollector, name: str) -> None:
    nodeid = f"sample_outcomes.py::{name}"
    word, categories = EXPECTED[name]
    assert real_run.categories[nodeid] == categories  # the expectation is pytest's own
    test = events.TestFinished(
        worker_id="gw0",
        nodeid=nodeid,
        location=real_run.reports[nodeid][0].location,
        reports=tuple(real_run.reports[nodeid]),
    )
    assert test.outcome == word
    assert test.duration == pytest.approx(sum(r.duration for r in real_run.reports[nodeid]))


def test_real_run_saw_every_sample_test(real_run: ReportCollector) -> None:
    assert {nodeid.split("::")[1] for nodeid in real_run.reports} == set(EXPECTED)


# ---------------------------------------------------------------------------- stream


def test_event_stream_publishes_in_order_to_every_subscriber() -> None:
    first: list[events.RunEvent] = []
    second: list[events.RunEvent] = []
    calls: list[str] = []

    def recording(name: str, sink: list[events.RunEvent]) -> Any:
        def consume(event: events.RunEvent) -> None:
            calls.append(name)
            sink.append(event)

        return consume

    stream = events.EventStream([recording("first", first)])
    stream.subscribe(recording("second", second))
    published: list[events.RunEvent] = [
        events.RunStarted(run_id="r", workers=2, strategy="load"),
        events.WorkerStarted(worker_id="gw0", pid=1),
        finished(report("call", "passed")),
        events.WorkerOutput(worker_id="gw0", stream="stdout", text="hi"),
        events.RunFinished(tests_not_run=0),
    ]
    for event in published:
        stream.publish(event)

    assert first == published
    assert second == published
    # Each event reaches every consumer (in subscription order) before the next one.
    assert calls == ["first", "second"] * len(published)


def test_event_stream_without_consumers_is_fine() -> None:
    events.EventStream().publish(events.RunFinished(tests_not_run=3))


def test_late_subscriber_sees_only_later_events() -> None:
    stream = events.EventStream()
    early = events.WorkerStarted(worker_id="gw0", pid=1)
    late = events.WorkerStarted(worker_id="gw1", pid=2)
    stream.publish(early)
    seen: list[events.RunEvent] = []
    stream.subscribe(seen.append)
    stream.publish(late)
    assert seen == [late]


def test_a_consumer_that_raises_is_reported_once_and_dropped() -> None:
    seen: list[events.RunEvent] = []
    failures: list[tuple[str, str]] = []

    class Broken:
        description = "broken report"

        def __call__(self, event: events.RunEvent) -> None:
            raise OSError("disk full")

    stream = events.EventStream(
        [Broken(), seen.append],
        on_failure=lambda consumer, error: failures.append(
            (events.consumer_name(consumer), str(error))
        ),
    )
    first = events.WorkerStarted(worker_id="gw0", pid=1)
    second = events.RunFinished(tests_not_run=0)
    stream.publish(first)
    stream.publish(second)
    assert seen == [first, second]  # the others and the run go on
    assert failures == [("broken report", "disk full")]  # once, by name
    assert [type(e) for _, e in stream.failures] == [OSError]


def test_a_consumer_that_is_not_isolated_lets_its_errors_through() -> None:
    """The replay into pytest's hooks: a plugin raising there is an INTERNALERROR, as
    it is in a serial run."""

    class Replay:
        isolated = False

        def __call__(self, event: events.RunEvent) -> None:
            raise RuntimeError("a plugin's hook raised")

    stream = events.EventStream([Replay()], on_failure=lambda c, e: None)
    with pytest.raises(RuntimeError, match="a plugin's hook raised"):
        stream.publish(events.RunFinished(tests_not_run=0))


def test_consumer_names() -> None:
    class Plain:
        def __call__(self, event: events.RunEvent) -> None:
            pass

    assert events.consumer_name(Plain()) == "Plain"
    from parallel_exec.reporting.replay import HookReplay

    assert HookReplay.isolated is False
