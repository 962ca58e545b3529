"""``-x`` and ``--maxfail`` stop a parallel run as they stop a serial one.

Tests already running on other workers may finish, but tests not yet started are not
started, and the exit code is 1 ("tests failed"), not 2 ("interrupted").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

TESTS = 40

STEP_SUITE = """
    import time

    import pytest

    FAILING = {failing!r}


    @pytest.mark.parametrize("n", range({tests}))
    def test_step(n):
        time.sleep(0.2)
        assert n not in FAILING, "planned failure"
"""


def write_step_suite(runner: PluginRunner, failing: set[int]) -> None:
    runner.pytester.makepyfile(test_steps=STEP_SUITE.format(failing=sorted(failing), tests=TESTS))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "failing", "max_failures"),
    [
        pytest.param(("-x",), {0}, 1, id="-x"),
        pytest.param(("--maxfail=2",), {0, 1}, 2, id="--maxfail=2"),
    ],
)
def test_stops_after_failures_without_starting_more_tests(
    runner: PluginRunner, args: tuple[str, ...], failing: set[int], max_failures: int
) -> None:
    write_step_suite(runner, failing)
    run = runner.observe(*args, workers=2)

    assert run.exit_code == 1, run.output
    assert f"stopping after {max_failures} failures" in run.output
    assert run.counts.get("failed") == max_failures, run.counts
    ran = run.counts.get("passed", 0) + run.counts["failed"]
    assert ran <= TESTS // 3, f"{ran} of {TESTS} tests ran after the stop was due"
    assert run.junit is not None
    assert len(run.junit.order) == ran, "the junit report lists tests that never ran"
