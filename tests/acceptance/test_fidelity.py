"""Fidelity: a parallel run reports exactly what the serial run of the same command does.

The zoo (see ``tests/conftest.py``) holds every outcome kind pytest has, so one
comparison per worker count covers outcomes, exit code, summary counts (warnings and
deselected included) and every ``--junitxml`` test case with its messages, properties
and captured output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

FORKED = ("--start-method", "forkserver")
SPAWNED = ("--start-method", "spawn")


@pytest.mark.slow
def test_zoo_matches_serial_run(runner: PluginRunner, zoo: tuple[str, ...]) -> None:
    """One serial baseline, compared with -n 1, -n 2, -n 3 with forked workers and -n 4
    with spawned ones; every difference listed."""
    serial = runner.observe(*zoo)
    # Guard against a zoo that silently lost its variety (then equality proves little).
    assert serial.exit_code == 1, serial.output
    for kind in ("passed", "failed", "errors", "skipped", "xfailed", "xpassed", "warnings"):
        assert serial.counts.get(kind, 0) > 0, f"the zoo has no {kind}"
    assert serial.counts["deselected"] == 2

    report: list[str] = []
    for workers, start in ((1, ()), (2, ()), (3, FORKED), (4, SPAWNED)):
        parallel = runner.observe(*zoo, *start, workers=workers)
        found = parallel.differences_from(serial)
        if found:
            report.append(f"{parallel.label} differs from the serial run:\n" + "\n".join(found))
    if report:
        pytest.fail("\n\n".join(report), pytrace=False)


SHARED_TEARDOWN_CONFTEST = """
    import pytest


    @pytest.fixture(scope="session")
    def session_shared():
        yield "session"
        raise RuntimeError("session teardown exploded")
"""

SHARED_TEARDOWN_TESTS = """
    import time

    import pytest


    @pytest.fixture(scope="{scope}")
    def shared():
        yield "{scope}"
        raise RuntimeError("{scope} teardown exploded")


    class TestUsesShared:
        @pytest.mark.parametrize("n", range(6))
        def test_uses_shared(self, shared, n):
            time.sleep(0.05)
            assert shared == "{scope}"
"""

#: Sorts last, so the session teardown is the only one failing on its last test.
SESSION_TEARDOWN_TESTS = """
    import time

    import pytest


    @pytest.mark.parametrize("n", range(6))
    def test_uses_session(session_shared, n):
        time.sleep(0.05)
        assert session_shared == "session"
"""


@pytest.mark.slow
def test_failing_teardown_of_class_and_module_fixtures_matches_serial(
    runner: PluginRunner,
) -> None:
    """A class or module fixture whose teardown fails is one error, as serially.

    With ``--dist suite`` a class's or module's tests stay on one worker, so the
    fixture is set up and torn down once, as in a serial run.
    """
    runner.pytester.makeconftest(SHARED_TEARDOWN_CONFTEST)
    runner.pytester.makepyfile(
        test_class_teardown=SHARED_TEARDOWN_TESTS.format(scope="class"),
        test_module_teardown=SHARED_TEARDOWN_TESTS.format(scope="module"),
    )
    serial, _ = runner.assert_fidelity("--dist", "suite", workers=2)
    assert serial.counts == {"passed": 12, "errors": 2}


@pytest.mark.slow
def test_failing_session_fixture_teardown_is_reported_per_worker(runner: PluginRunner) -> None:
    """A session fixture lives once per worker, so does its failing teardown.

    This is the one documented divergence from a serial run (docs/xdist-differences.md):
    every worker that used the fixture tears it down and reports the error on its own
    last test; the error is the same each time and no test result is lost.
    """
    runner.pytester.makeconftest(SHARED_TEARDOWN_CONFTEST)
    runner.pytester.makepyfile(test_session_teardown=SESSION_TEARDOWN_TESTS)
    serial = runner.observe()
    parallel = runner.observe(workers=2)
    assert serial.counts == {"passed": 6, "errors": 1}
    assert parallel.counts["passed"] == 6
    assert 1 <= parallel.counts["errors"] <= 2
    assert parallel.exit_code == serial.exit_code == 1
