"""The live status on plain data: the ETA arithmetic (from the history, corrected by
how the run does; from the rate without history), slow tests, widths; and the drawing,
replayed through a terminal emulator (pyte): the status sits below pytest's output,
pytest's partial line survives every redraw, and nothing of it is left at the end."""

from __future__ import annotations

import io
import os
from typing import Any

import pyte
import pytest

from parallel_exec.reporting import events
from parallel_exec.reporting.progress import RunProgress, fit, format_duration
from parallel_exec.reporting.writers.live import HeldFile, LiveStatus, ProgressLines, live_wanted

T0 = 1000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def report(nodeid: str, outcome: str = "passed", duration: float = 1.0) -> Any:
    return pytest.TestReport(
        nodeid=nodeid,
        location=("f.py", 1, nodeid),
        keywords={},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=None,
        when="call",
        duration=duration,
    )


def finished(worker: str, nodeid: str, outcome: str = "passed", duration: float = 1.0) -> Any:
    return events.TestFinished(
        worker_id=worker,
        nodeid=nodeid,
        location=("f.py", 1, nodeid),
        reports=(report(nodeid, outcome, duration),),
    )


def run_of(nodeids: list[str], predictions: dict[str, float], workers: int = 2) -> RunProgress:
    clock = Clock()
    progress = RunProgress(clock=clock)
    progress(events.RunStarted("r", workers, "time", started_at=T0))
    for w in range(workers):
        progress(events.WorkerStarted(f"gw{w}", 100 + w))
    progress(events.CollectionFinished("gw0", tuple(nodeids), (), (), ()))
    progress(
        events.RunPlanned(
            "time", workers, len(nodeids), {k: (v, 0.0) for k, v in predictions.items()}, None
        )
    )
    return progress


def test_eta_from_the_history_is_the_work_left_over_the_workers() -> None:
    ids = [f"t{i}" for i in range(4)]
    progress = run_of(ids, dict.fromkeys(ids, 10.0))
    assert progress.eta(T0).seconds == pytest.approx(20.0)  # 40 s of work, 2 workers
    progress(events.TestStarted("gw0", "t0", T0))
    progress(events.TestStarted("gw1", "t1", T0))
    assert progress.eta(T0 + 4).seconds == pytest.approx((6 + 6 + 20) / 2)
    progress(finished("gw0", "t0", duration=10.0))
    assert progress.eta(T0 + 10).seconds == pytest.approx((0 + 20) / 2)
    assert progress.eta_text(T0 + 10) == "ETA 10s"


def test_an_unknown_test_counts_as_a_typical_one() -> None:
    progress = run_of(["a", "b", "new"], {"a": 4.0, "b": 8.0}, workers=1)
    assert progress.eta(T0).seconds == pytest.approx(4 + 8 + 6)


def test_the_eta_follows_how_the_run_does_against_its_predictions() -> None:
    ids = [f"t{i}" for i in range(10)]
    progress = run_of(ids, dict.fromkeys(ids, 1.0), workers=1)
    for nodeid in ids[:5]:
        progress(finished("gw0", nodeid, duration=2.0))  # twice as slow as predicted
    assert progress.correction() == pytest.approx(2.0)
    assert progress.eta(T0).seconds == pytest.approx(5 * 1.0 * 2.0)
    for nodeid in ids[5:8]:
        progress(finished("gw0", nodeid, duration=100.0))
    assert progress.correction() == 10.0  # bounded


def test_the_eta_counts_what_workers_spend_between_tests() -> None:
    """Tests predicted (and taking) 0.1 s each, but a worker gets through one every
    0.5 s: the ETA follows the wall clock, not the tests' own durations."""
    ids = [f"t{i}" for i in range(20)]
    progress = run_of(ids, dict.fromkeys(ids, 0.1), workers=1)
    progress(events.TestStarted("gw0", "t0", T0))
    for _n, nodeid in enumerate(ids[:10]):
        progress(finished("gw0", nodeid, duration=0.1))
    assert progress.correction() == pytest.approx(1.0)  # the tests take what was predicted
    assert progress.overhead(T0 + 5.0) == pytest.approx(0.4)  # 5 s of wall for 1 s of tests
    assert progress.eta(T0 + 5.0).seconds == pytest.approx(10 * 0.1 + 10 * 0.4)


def test_the_eta_of_millisecond_tests_is_what_each_costs_a_worker() -> None:
    """A suite of 1 ms tests where each costs a worker 50 ms (messaging, reporting):
    fifty times the tests' own durations, far past the duration correction's bound."""
    ids = [f"t{i}" for i in range(1000)]
    progress = run_of(ids, dict.fromkeys(ids, 0.001), workers=2)
    progress(events.TestStarted("gw0", "t0", T0))
    for nodeid in ids[:100]:
        progress(finished("gw0", nodeid, duration=0.001))
    # 100 tests done in 2.5 s on 2 workers: 0.05 s each; 900 left → 22.5 s.
    assert progress.eta(T0 + 2.5).seconds == pytest.approx(900 * 0.05 / 2)
    assert progress.eta_text(T0 + 2.5) == "ETA 22s"
    # Under a second with tests left is not "0s" (which reads as finished).
    assert progress.eta_text(T0 + 0.001) == "ETA <1s"


def test_without_history_the_eta_is_the_rate_so_far_and_says_so() -> None:
    progress = run_of([f"t{i}" for i in range(10)], {})
    assert progress.eta(T0 + 1).seconds is None
    assert progress.eta_text(T0 + 1) == "ETA --"
    for i in range(2):
        progress(finished("gw0", f"t{i}"))
    assert progress.eta(T0 + 4).seconds == pytest.approx(8 / (2 / 4))
    assert progress.eta_text(T0 + 4) == "ETA 16s (from the rate so far)"
    assert progress.plain_line(T0 + 4) == (
        "parallel_exec: 2/10 done, 0 failed, ETA 16s (from the rate so far)"
    )


def test_a_test_is_slow_past_three_times_its_prediction_and_five_seconds() -> None:
    progress = run_of(["quick", "long"], {"quick": 1.0, "long": 10.0})
    progress(events.TestStarted("gw0", "quick", T0))
    progress(events.TestStarted("gw1", "long", T0))
    assert progress.slow(progress.workers["gw0"], T0 + 4.9) is False  # not over 5 s
    assert progress.slow(progress.workers["gw0"], T0 + 5.1) is True
    assert progress.slow(progress.workers["gw1"], T0 + 29) is False
    assert progress.slow(progress.workers["gw1"], T0 + 31) is True
    lines = progress.status_lines(T0 + 31, 60)
    assert lines[2].endswith(" 31s SLOW")
    assert lines[3].endswith(" 31s SLOW")


def test_lines_fit_a_narrow_terminal_and_keep_the_end_of_a_node_id() -> None:
    long_id = "tests/very/deep/package/test_module_with_a_long_name.py::TestClass::test_it[param]"
    progress = run_of([long_id, "b"], {long_id: 3.0, "b": 1.0})
    progress(events.TestStarted("gw0", long_id, T0))
    for width in (20, 40, 60, 132):
        lines = progress.status_lines(T0 + 2, width)
        assert all(len(line) <= max(20, width) for line in lines), lines
    line = progress.status_lines(T0 + 2, 60)[2]
    assert "test_it[param]" in line
    assert line.startswith("  gw0  …")
    assert progress.status_lines(T0 + 2, 60)[3] == "  gw1  idle"
    assert fit("abcdef", 4) == "…def"
    assert [format_duration(s) for s in (0.4, 42, 100, 3725)] == ["0s", "42s", "1m40s", "1h02m"]


class Terminal:
    """A pyte screen behind a file, of the given size."""

    def __init__(self, columns: int = 60, rows: int = 20) -> None:
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.Stream(self.screen)
        self.size = os.terminal_size((columns, rows))
        self.written = io.StringIO()

    def write(self, text: str) -> int:
        self.written.write(text)
        self.stream.feed(text.replace("\n", "\r\n"))  # a TTY's output post-processing
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display if line.strip()]


def test_the_status_is_drawn_below_pytests_output_and_erased_at_the_end() -> None:
    terminal = Terminal()
    current: list[Any] = [terminal]
    progress = run_of(["a", "b", "c"], {"a": 2.0, "b": 2.0, "c": 2.0})
    live = LiveStatus(
        progress, lambda: current[0], lambda f: current.__setitem__(0, f), lambda: terminal.size
    )
    live(events.RunStarted("r", 2, "time", started_at=T0))
    assert isinstance(current[0], HeldFile)
    current[0].write("collected 3 items\n")
    current[0].write("..")  # pytest's progress characters, no newline yet
    live(events.TestStarted("gw0", "a", T0))
    live(events.Tick(T0 + 1))
    assert terminal.lines()[:2] == ["collected 3 items", ".."]
    assert "ETA" in terminal.lines()[2]
    worker_line = terminal.lines()[4]
    assert worker_line.startswith("  gw0  a ")
    assert worker_line.endswith(" 1s")
    assert len(worker_line) == 59  # the width less one: never a wrapped line
    current[0].write(".F")
    live(events.Tick(T0 + 1.05))  # too soon: nothing redrawn
    assert terminal.lines()[1] == ".."
    live(events.Tick(T0 + 2))
    assert terminal.lines()[1] == "...F"  # the partial line continued, not repeated
    current[0].write("   [100%]\n")
    live(events.RunFinished(tests_not_run=0))
    assert current[0] is terminal  # pytest's file is back
    assert terminal.lines() == ["collected 3 items", "...F   [100%]"]


def test_the_status_is_only_for_a_terminal_that_can_draw_it() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert live_wanted(Tty(), asked=True, capture_off=False, environ={"TERM": "xterm"})
    assert not live_wanted(io.StringIO(), asked=True, capture_off=False, environ={})
    assert not live_wanted(Tty(), asked=False, capture_off=False, environ={})
    assert not live_wanted(Tty(), asked=True, capture_off=True, environ={})
    assert not live_wanted(Tty(), asked=True, capture_off=False, environ={"TERM": "dumb"})


def test_progress_lines_come_every_so_often_and_stop_with_the_run() -> None:
    written: list[str] = []
    progress = run_of(["a", "b"], {})
    lines = ProgressLines(progress, written.append, every=30.0)
    lines(events.RunStarted("r", 2, "time", started_at=T0))
    lines(events.Tick(T0 + 29))
    assert written == []
    lines(finished("gw0", "a", "failed"))
    lines(events.Tick(T0 + 30))
    lines(events.Tick(T0 + 31))
    assert written == ["parallel_exec: 1/2 done, 1 failed, ETA 30s (from the rate so far)"]
    lines(events.RunFinished(tests_not_run=0))
    lines(events.Tick(T0 + 90))
    assert len(written) == 1
