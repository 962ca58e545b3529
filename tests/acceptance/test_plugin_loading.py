"""Loading: ``-p parallel_exec`` owns ``-n``; without it pytest-xdist still does.

pytest-xdist is installed beside the plugin.  Asking for parallel_exec must not run
xdist (or both), and leaving it out must leave xdist working as before.  The plugin must
also work when entry-point plugins are not auto-loaded at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

WORKER_SUITE = """
    import pytest


    @pytest.mark.parametrize("n", range(4))
    def test_on_a_worker(n, worker_id):
        assert worker_id.startswith("gw")
"""

XDIST_HEADER = "created: 2/2 workers"


def test_parallel_exec_runs_when_xdist_is_installed(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_workers=WORKER_SUITE)
    result = runner.run(workers=2)

    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 4}
    header = runner.header_lines(result)
    assert any(line.startswith("parallel_exec:") for line in header), header
    assert XDIST_HEADER not in result.stdout.str()
    plugins = [line for line in header if line.startswith("plugins:")]
    assert not any("xdist" in line for line in plugins), plugins


def test_plain_n_still_runs_under_xdist(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_workers=WORKER_SUITE)
    result = runner.pytester.runpytest_subprocess("-n", "2")  # no "-p parallel_exec"

    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 4}
    assert XDIST_HEADER in result.stdout.str()
    assert not any(line.startswith("parallel_exec:") for line in result.outlines)


def test_works_without_plugin_autoload(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    runner.pytester.makepyfile(test_workers=WORKER_SUITE)
    result = runner.run(workers=2)

    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 4}
    assert any(line.startswith("parallel_exec:") for line in runner.header_lines(result))
