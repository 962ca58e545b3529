"""A finished test's result reaches the controller at once, whatever the worker runs
next: a failure is on the terminal while the long test after it still runs (and a Ctrl-C
then loses no result that was already in)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from faults_helpers import start_run

if TYPE_CHECKING:
    from conftest import PluginRunner

SUITE = """
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
        time.sleep(5)
"""


@pytest.mark.slow
def test_a_failure_is_shown_while_the_next_test_runs(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner.pytester.makepyfile(test_prompt=SUITE)
    run = start_run(runner, monkeypatch, "-v", "-p", "no:randomly", workers=1)
    try:
        run.wait_for("test_prompt.py::test_fails FAILED")
        seen = time.monotonic()
    finally:
        exit_code = run.finish()
    ended = time.monotonic()
    assert exit_code == 1, run.text
    # The long test takes 5 s; the failure must be shown long before the run ends.
    assert ended - seen > 2.5, f"shown {ended - seen:.2f}s before the end\n{run.text}"
