"""The live status of a real parallel run, drawn on a pseudo-terminal and read back
through a terminal emulator (pyte): per-worker lines and an ETA while it runs, a final
screen with no status left; into a pipe the run prints what it prints without the
live status; ``--progress-every`` prints plain progress lines in a log."""

from __future__ import annotations

import os
import re
import signal
import textwrap
from typing import TYPE_CHECKING

import pyte
import pytest

from pty_terminal import run_on_terminal, text_of

if TYPE_CHECKING:
    from conftest import PluginRunner

pytestmark = pytest.mark.slow

SUITE = textwrap.dedent(
    """
    import time, pytest

    @pytest.mark.parametrize("n", range(6))
    def test_quick(n):
        time.sleep(0.2)

    @pytest.mark.parametrize("n", range(2))
    def test_takes_a_while_with_a_long_name_that_is_cut(n):
        time.sleep(2.5)

    def test_fails():
        assert 0
    """
)

WORKER_LINE = re.compile(r"^\s*gw\d+\s+(idle|\S.*\d+s( SLOW)?)$")
RUNNING_LINE = re.compile(r"^\s*gw\d+\s+\S.*\d+s( SLOW)?$")


def run_in_terminal(
    command: list[str],
    cwd: str,
    columns: int = 80,
    rows: int = 24,
    interrupt: bool = False,
) -> tuple[list[list[str]], list[str]]:
    """Run ``command`` on a pseudo-terminal; the screens seen while it ran (every 0.1 s)
    and the final one.  ``interrupt``: Ctrl-C (SIGINT) once two workers run tests."""
    screens: list[list[str]] = []
    pending = [interrupt]

    def look(screen: pyte.Screen, pid: int) -> None:
        screens.append(text_of(screen))
        if pending[0] and sum(bool(RUNNING_LINE.match(line)) for line in screens[-1]) >= 2:
            pending[0] = False
            os.kill(pid, signal.SIGINT)

    final = run_on_terminal(command, cwd, look, columns=columns, rows=rows)
    return screens, text_of(final)


def test_the_live_status_shows_workers_and_an_eta_and_leaves_nothing(
    runner: PluginRunner,
) -> None:
    runner.pytester.makepyfile(test_live=SUITE)
    command = runner.command("-p", "no:randomly", workers=2)
    runner.run("-p", "no:randomly", workers=2)  # the history: an ETA from predictions
    screens, final = run_in_terminal(command, str(runner.pytester.path), columns=60)
    during = [s for s in screens if any(WORKER_LINE.match(line) for line in s)]
    assert during, "no status was drawn:\n" + "\n".join(screens[-1] if screens else final)
    busy = next((s for s in during if sum(bool(RUNNING_LINE.match(line)) for line in s) == 2), None)
    assert busy is not None, "\n".join(during[-1])
    shown = "\n".join(busy)
    assert re.search(r"\d+/9 \[[#-]+\] +\d+%  \d+s  ETA (<1|\d+)s$", shown, re.M), shown
    assert any(re.fullmatch(r"\d+ passed, \d+ failed, 0 skipped", line) for line in busy), busy
    long_test = [line for line in busy if "…" in line]
    status = [line for line in busy if WORKER_LINE.match(line) or "ETA" in line]
    assert all(len(line) <= 59 for line in status), status  # nothing wraps at 60 columns
    assert long_test or any("test_quick" in line for line in busy), busy
    # The final screen: pytest's summary, no status left above or in it.
    text = "\n".join(final)
    assert "1 failed, 8 passed" in text, text
    assert not any(WORKER_LINE.match(line) for line in final), text
    assert "ETA" not in text, text


def normalized(output: str) -> str:
    """The output without times, and without the run's own figures and advice (they
    depend on how fast this run went)."""
    lines = [line for line in output.splitlines() if not line.startswith("parallel_exec: ")]
    # Outcome characters come in the order tests finish: compare them as a multiset.
    lines = [
        "".join(sorted(line.split()[0]))
        if re.fullmatch(r"[.FEsxX]+( +\[ *\d+%\])?", line)
        else line
        for line in lines
    ]
    return re.sub(r"\d+\.\d+s|\d+(\.\d+)?x|\d+%|gw\d+", "#", "\n".join(lines))


def test_into_a_pipe_the_run_prints_what_it_prints_without_the_live_status(
    runner: PluginRunner,
) -> None:
    runner.pytester.makepyfile(test_live=SUITE.replace("2.5", "0.3"))
    runner.run("-p", "no:randomly", workers=2)
    plain = runner.run("-p", "no:randomly", workers=2)
    off = runner.run("-p", "no:randomly", "--no-live", workers=2)
    assert "\x1b[" not in plain.stdout.str()
    assert normalized(plain.stdout.str()) == normalized(off.stdout.str())
    assert "ETA" not in plain.stdout.str()


def test_progress_lines_in_a_log_when_asked(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_live=SUITE)
    result = runner.run("-p", "no:randomly", "--progress-every", "1", workers=2)
    lines = [
        line for line in result.outlines if line.startswith("parallel_exec: ") and " done, " in line
    ]
    assert lines, result.stdout.str()
    assert all(
        re.fullmatch(r"parallel_exec: \d+/9 done, [01] failed, ETA (--|(<1|\d+)s.*)", line)
        for line in lines
    ), lines
    quiet = runner.run("-p", "no:randomly", workers=2)
    assert not any(" done, " in line for line in quiet.outlines)


def test_the_live_status_is_off_when_asked_and_with_dumb_terminals(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_live=SUITE.replace("2.5", "1.5"))
    ini = runner.pytester.path / "off.ini"
    ini.write_text("[pytest]\nparallel_exec_live = false\n")
    cases: tuple[tuple[list[str], dict[str, str]], ...] = (
        (["--no-live"], {}),
        ([], {"TERM": "dumb"}),
        (["-c", str(ini), "--rootdir", str(runner.pytester.path)], {}),
    )
    for extra, env in cases:
        command = runner.command("-p", "no:randomly", *extra, workers=2)
        if env:
            command = ["env", *(f"{k}={v}" for k, v in env.items()), *command]
        screens, final = run_in_terminal(command, str(runner.pytester.path))
        assert not any(WORKER_LINE.match(line) for s in screens for line in s), extra or env
        assert "1 failed, 8 passed" in "\n".join(final)


def test_ctrl_c_leaves_the_terminal_clean(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_live=SUITE.replace("2.5", "20"))
    command = runner.command("-p", "no:randomly", workers=2)
    screens, final = run_in_terminal(command, str(runner.pytester.path), interrupt=True)
    text = "\n".join(final)
    assert any(RUNNING_LINE.match(line) for s in screens for line in s), "no status drawn"
    assert "KeyboardInterrupt" in text, text
    assert not any(WORKER_LINE.match(line) for line in final), text
    assert "ETA" not in text, text
