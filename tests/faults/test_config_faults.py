"""A suite's configuration must not break the run before any test starts.

A suite that turns every warning into an error (``filterwarnings = error``, as click's
does) ends at configure time on any warning parallel_exec causes there, with an
INTERNALERROR (exit 3): for example by reading pytest's deprecated ``config.inicfg``
(pytest 9.1+) to find the cache directory when the cacheprovider plugin is disabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from faults_helpers import assert_accounted, assert_no_process_left, run_fault

if TYPE_CHECKING:
    from conftest import PluginRunner

SUITE = """
    import pytest

    @pytest.mark.parametrize("n", range(6))
    def test_many(n):
        pass
"""

#: What a warning raised by the run itself would show as.
WARNING_WORDS = ("PytestRemovedIn", "DeprecationWarning", "INTERNALERROR", "inicfg")


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [(), ("-p", "no:cacheprovider")],
    ids=["cacheprovider", "no-cacheprovider"],
)
def test_warnings_as_errors_suite_runs(runner: PluginRunner, extra: tuple[str, ...]) -> None:
    runner.pytester.makeini(
        """
        [pytest]
        filterwarnings =
            error
            # pytest's own warning when the cacheprovider, which registers it, is off
            ignore:Unknown config option. cache_dir:pytest.PytestConfigWarning
        cache_dir = .my_cache
        """
    )
    runner.pytester.makepyfile(test_suite=SUITE)
    run = run_fault(runner, *extra)
    assert run.exit_code == 0, run.output
    for word in WARNING_WORDS:
        assert word not in run.output, run.output
    assert_accounted(run, 6)
    assert_no_process_left(run)
    # The timing history is where the ini puts pytest's cache, with or without the plugin.
    assert (runner.pytester.path / ".my_cache" / "parallel_exec" / "history.sqlite").exists()
