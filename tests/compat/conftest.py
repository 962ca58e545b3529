"""Fixtures of the plugin compatibility matrix (see ``plugin_env``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_env import Runner, build


@pytest.fixture(scope="session")
def plugin_python(request: pytest.FixtureRequest) -> Path:
    assert request.config.cache is not None
    return build(Path(request.config.cache.mkdir("parallel_exec_compat")))


@pytest.fixture(params=[False, True], ids=["xdist-installed", "xdist-not-installed"])
def hide_xdist(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def runner(plugin_python: Path, tmp_path: Path) -> Runner:
    path = tmp_path / "suite"
    path.mkdir()
    return Runner(plugin_python, path)
