"""``--lf`` after a parallel run reruns exactly the tests that failed in it.

Workers never write pytest's cache; the controller must, from the replayed reports.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

FAILING = ("test_mixed.py::test_case[2]", "test_mixed.py::test_case[5]")


@pytest.mark.slow
def test_last_failed_reruns_only_failures(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(
        test_mixed="""
        import pytest


        @pytest.mark.parametrize("n", range(8))
        def test_case(n):
            assert n not in (2, 5)
        """
    )
    first = runner.observe(workers=2)
    assert first.counts == {"failed": 2, "passed": 6}

    cache = runner.pytester.path / ".pytest_cache" / "v" / "cache" / "lastfailed"
    assert cache.exists(), "the parallel run wrote no lastfailed cache"
    assert set(json.loads(cache.read_text())) == set(FAILING)

    rerun = runner.observe("--lf", workers=2)
    assert rerun.exit_code == 1
    assert rerun.counts == {"failed": 2}  # pytest's --lf does not even collect the others
    assert rerun.outcomes == {
        "test_mixed::test_case[2]": "failed",
        "test_mixed::test_case[5]": "failed",
    }
