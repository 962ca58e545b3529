"""Scheduling faults: a run ends, whatever the timing of its workers.

Issue 13: with a recorded history, ``--dist time`` hands a test predicted above 0.25 s
(``feed_seconds``) alone to a worker.  The worker keeps it in hand until it knows the
next test (pytest's teardown needs ``nextitem``) and asks for more work first; if the
test's file was collected by another worker, it imports the file before it can even
ask.  The scheduler used to time the test from its assignment: a heavy import made the
unstarted test a "straggler", whose request for work waits until the test ends, which
it never did.  The run hung forever (click's own suite with ``-n 4 --dist time``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from faults_helpers import assert_accounted, assert_no_process_left, run_fault

if TYPE_CHECKING:
    from conftest import PluginRunner

#: A test file that takes 1.5 s to import, with four tests of 0.3 s: planned one per
#: worker, three of them on workers that did not collect the file and import it when
#: the test is assigned; 1.5 s is well beyond the straggler bar of a 0.3 s test whose
#: history has no spread (0.3 + 0.5 s).
HEAVY_IMPORT = """
    import time

    import pytest

    time.sleep(1.5)  # a heavy import (numpy, a framework...)

    @pytest.mark.parametrize("n", range(4))
    def test_long(n):
        time.sleep(0.3)
"""

QUICK = """
    import pytest

    @pytest.mark.parametrize("n", range(8))
    def test_quick(n):
        pass
"""


@pytest.mark.slow
def test_a_held_test_whose_file_takes_long_to_import_does_not_hang_the_run(
    runner: PluginRunner,
) -> None:
    runner.pytester.makepyfile(test_heavy=HEAVY_IMPORT, test_quick=QUICK)
    first = run_fault(runner, "--dist", "time", workers=4, timeout=60)  # records history
    assert first.exit_code == 0, first.output
    assert_accounted(first, 12)

    try:
        run = run_fault(runner, "--dist", "time", workers=4, timeout=60)
    except runner.pytester.TimeoutExpired:
        pytest.fail("the run with a history hung (issue 13)")
    assert run.exit_code == 0, run.output
    assert_accounted(run, 12)
    assert_no_process_left(run)
