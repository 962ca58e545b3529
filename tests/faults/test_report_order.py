"""The FAILURES and ERRORS sections and the short test summary list tests in collection
order, as a serial run does, whatever order the workers finished them in."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from faults_helpers import assert_accounted, assert_no_process_left, run_fault

if TYPE_CHECKING:
    from conftest import PluginRunner

# The first tests are slow and the last fast: with two workers, the last ones finish first.
SUITE = """
    import time

    import pytest

    @pytest.fixture
    def broken():
        raise RuntimeError("setup")

    @pytest.mark.parametrize("n", range(6))
    def test_fails(n):
        time.sleep(0.3 * (6 - n) / 6)
        assert n < 0

    def test_error(broken):
        pass

    @pytest.mark.parametrize("n", range(4))
    def test_skips(n):
        pytest.skip(f"skip {n}")
"""

FAILURE_HEADER = re.compile(r"^_{3,} (test_\S+) _{3,}$")


def order(lines: list[str], pattern: str) -> list[str]:
    return [m.group(1) for m in (re.match(pattern, line) for line in lines) if m]


@pytest.mark.slow
def test_failure_sections_follow_collection_order(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_order=SUITE)
    serial = runner.run("-rA", "-p", "no:randomly")
    run = run_fault(runner, "-rA", "-p", "no:randomly", "--dist", "round-robin")
    assert_accounted(run, 11)
    for pattern in (
        r"^_{3,} (\S+) _{3,}$",  # FAILURES / ERRORS section headers
        r"^(?:FAILED|ERROR|SKIPPED|PASSED) (\S+)",  # short test summary
    ):
        assert order(run.result.outlines, pattern) == order(serial.outlines, pattern), run.output
    assert run.exit_code == serial.ret == 1
    assert_no_process_left(run)
