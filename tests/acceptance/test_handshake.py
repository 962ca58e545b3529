"""The handshake: a worker that runs another version than the controller is refused.

Messages are pickled, so both sides must run the same protocol, the same package and
the same Python.  Here the workers' copy of the package claims another version (a
``sitecustomize`` that only worker interpreters, started with ``python -c``, act on),
and the run must end with a clear error naming both sides, not a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from parallel_exec._version import __version__

if TYPE_CHECKING:
    from conftest import PluginRunner

#: Imported by every interpreter started with the test directory on ``PYTHONPATH``
#: (pytester puts it there); only execnet's workers and fork server run ``-c``.
OTHER_VERSION_IN_WORKERS = """
    import sys

    if sys.argv[:1] == ["-c"]:
        import parallel_exec._version

        parallel_exec._version.__version__ = "0.0.0+other"
"""


@pytest.mark.slow
@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_a_worker_of_another_version_is_a_clear_error(runner: PluginRunner, start: str) -> None:
    runner.pytester.makepyfile(
        sitecustomize=OTHER_VERSION_IN_WORKERS, test_one="def test_one():\n    pass\n"
    )
    result = runner.run("--start-method", start, workers=2)
    output = runner.output(result)
    assert result.ret == pytest.ExitCode.INTERRUPTED, output
    assert f"parallel_exec version: controller {__version__}, worker 0.0.0+other" in output, output
    assert "does not run what the controller runs" in output
    runner.assert_no_traceback(result)
    assert "1 passed" not in output


@pytest.mark.slow
def test_the_same_version_runs(runner: PluginRunner) -> None:
    """The check above can tell: without the ``sitecustomize`` the same run passes."""
    runner.pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = runner.run(workers=2)
    assert result.ret == 0, runner.output(result)
