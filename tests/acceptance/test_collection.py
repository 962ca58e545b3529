"""Collection outcomes: errors, an empty suite, and workers that disagree.

Collection errors and "nothing collected" must give the serial exit codes (2 and 5) and
the same report.  Workers that collect different test ids (random parametrization)
cannot share work; that must be a clear message naming the ids, not a traceback.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

DIFFERING_ID = re.compile(r"test_random_ids\.py::test_process_dependent\[pid\d+-\d\]")


BROKEN_FILES = {
    "test_syntax_error": """
        def test_never(:
            pass
    """,
    "test_import_error": """
        import module_that_does_not_exist_anywhere


        def test_never():
            pass
    """,
}

FINE_FILE = """
    import pytest


    @pytest.mark.parametrize("n", range(3))
    def test_fine(n):
        pass
"""


@pytest.mark.slow
@pytest.mark.parametrize("with_fine_file", [True, False], ids=["with-tests", "only-errors"])
def test_collection_errors_match_serial(runner: PluginRunner, with_fine_file: bool) -> None:
    files = dict(BROKEN_FILES, **({"test_fine": FINE_FILE} if with_fine_file else {}))
    runner.pytester.makepyfile(**files)
    _, parallel = runner.assert_fidelity(workers=2)

    assert parallel.exit_code == 2
    assert parallel.collection_errors == ("test_import_error.py", "test_syntax_error.py")
    assert "Interrupted: 2 errors during collection" in parallel.output
    assert "SyntaxError" in parallel.output
    assert "No module named 'module_that_does_not_exist_anywhere'" in parallel.output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("files", "args"),
    [
        pytest.param({"test_helpers": "def helper():\n    pass\n"}, (), id="no-tests-in-file"),
        pytest.param(
            {"test_unwanted": "def test_unwanted():\n    pass\n"},
            ("-k", "nothing_matches_this"),
            id="all-deselected",
        ),
    ],
)
def test_nothing_collected_exits_5_like_serial(
    runner: PluginRunner, files: dict[str, str], args: tuple[str, ...]
) -> None:
    runner.pytester.makepyfile(**files)
    serial, _ = runner.assert_fidelity(*args, workers=2)
    assert serial.exit_code == 5


def test_workers_collecting_different_ids_is_a_clear_error(runner: PluginRunner) -> None:
    """Test ids that depend on the process cannot be shared out: say so, naming them."""
    runner.pytester.makepyfile(
        test_random_ids="""
        import os
        import time

        import pytest


        @pytest.mark.parametrize("n", range(8), ids=lambda n: f"pid{os.getpid()}-{n}")
        def test_process_dependent(n):
            time.sleep(0.1)


        @pytest.mark.parametrize("n", range(8))
        def test_stable(n):
            time.sleep(0.1)
        """
    )
    result = runner.run(workers=2)
    output = runner.output(result)

    assert result.ret != 0, output
    runner.assert_no_traceback(result)
    errors = [line for line in result.outlines if line.startswith("parallel_exec:")]
    named = [line for line in errors if DIFFERING_ID.search(line)]
    assert named, f"no parallel_exec message names a differing test id:\n{output}"
