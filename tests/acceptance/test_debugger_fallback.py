"""``--pdb`` and ``--trace`` need the test in the terminal's process: run serially.

The user is told so in one header line, and the results are those of a serial run
(the suite checks that it really ran in the main process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner


@pytest.mark.parametrize("option", ["--pdb", "--trace"])
def test_debugger_option_falls_back_to_serial(runner: PluginRunner, option: str) -> None:
    runner.pytester.makepyfile(
        test_in_process="""
        import os

        import pytest


        @pytest.mark.parametrize("n", range(3))
        def test_runs_in_main_process(n, worker_id):
            assert worker_id == "master"
            assert "PARALLEL_EXEC_WORKER" not in os.environ
        """
    )
    # stdin is closed, so --trace's prompt reads EOF and each test just continues.
    result = runner.run(option, workers=2)

    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 3}
    notes = [line for line in result.outlines if line.startswith("parallel_exec:")]
    assert len(notes) == 1, notes
    assert option in notes[0]
    assert "serial" in notes[0]
