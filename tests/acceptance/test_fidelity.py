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


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_zoo_matches_serial_run(
    runner: PluginRunner, zoo: tuple[str, ...], workers: int
) -> None:
    serial, _ = runner.assert_fidelity(*zoo, workers=workers)
    # Guard against a zoo that silently lost its variety (then equality proves little).
    assert serial.exit_code == 1
    for kind in ("passed", "failed", "errors", "skipped", "xfailed", "xpassed", "warnings"):
        assert serial.counts.get(kind, 0) > 0, f"the zoo has no {kind}"
    assert serial.counts["deselected"] == 2


@pytest.mark.slow
def test_zoo_spreads_over_workers(runner: PluginRunner, zoo: tuple[str, ...]) -> None:
    """The zoo is big enough that two workers both run tests (else -n 2 proves nothing)."""
    pytester = runner.pytester
    pytester.makeconftest(
        pytester.path.joinpath("conftest.py").read_text()
        + "\n\n@pytest.fixture(autouse=True)\n"
        "def _record_worker(worker_id, record_property):\n"
        "    record_property('worker', worker_id)\n"
    )
    observation = runner.observe(*zoo, workers=2)
    assert observation.junit is not None
    workers = {
        value
        for cases in observation.junit.cases.values()
        for case in cases
        for tag, attributes, _ in case.children
        if tag == "property" and dict(attributes).get("name") == "worker"
        for value in [dict(attributes)["value"]]
    }
    assert workers == {"gw0", "gw1"}


@pytest.mark.parametrize("scope", ["class", "module", "session"])
def test_failing_teardown_of_shared_fixture_matches_serial(
    runner: PluginRunner, scope: str
) -> None:
    """A class/module/session fixture whose teardown fails is one error, as serially.

    Serially the error is reported once, on the teardown of the last test using the
    fixture; a parallel run must not report it once per worker.
    """
    runner.pytester.makepyfile(
        test_shared_teardown=f"""
        import time

        import pytest


        @pytest.fixture(scope="{scope}")
        def shared():
            yield "shared"
            raise RuntimeError("{scope} teardown exploded")


        class TestUsesShared:
            @pytest.mark.parametrize("n", range(8))
            def test_uses_shared(self, shared, n):
                time.sleep(0.05)
                assert shared == "shared"
        """
    )
    runner.assert_fidelity(workers=2)
