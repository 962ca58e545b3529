"""A finished test's result reaches the controller at once, whatever the worker runs
next: a failure is on the terminal while the long test after it still runs (and a Ctrl-C
then loses no result that was already in)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from faults_helpers import start_run

if TYPE_CHECKING:
    from conftest import PluginRunner

SUITE = """
    import pathlib
    import time

    import pytest

    @pytest.mark.parametrize("n", range(10))
    def test_fast(n):
        pass

    def test_slower():
        time.sleep(0.1)  # the worker sends its batch after this one: the next waits

    def test_fails():
        assert 0

    def test_long():
        # Runs until the failure before it has been seen on the terminal.
        release = pathlib.Path(__file__).parent / "failure-seen"
        deadline = time.monotonic() + 60
        while not release.exists():
            assert time.monotonic() < deadline, "the failure was not shown while this ran"
            time.sleep(0.02)
"""


@pytest.mark.slow
def test_a_failure_is_shown_while_the_next_test_runs(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner.pytester.makepyfile(test_prompt=SUITE)
    run = start_run(runner, monkeypatch, "-v", "-p", "no:randomly", workers=1)
    try:
        # Fails if the run ends (or a minute passes) before the failure is shown.
        # -v names the worker first, as under xdist: "[gw0] [ 92%] FAILED test_prompt.py::..."
        run.wait_for("FAILED test_prompt.py::test_fails", timeout=90)
        (runner.pytester.path / "failure-seen").touch()
    finally:
        exit_code = run.finish()
    assert exit_code == 1, run.text
    assert "PASSED test_prompt.py::test_long" in run.text, run.text
