"""Test modules that depend on each other's imports, and plugins that order across files.

A serial run imports every test module before the first test runs, and suites rely on
that without knowing it: click's ``test_echo_via_pager.py`` uses
``click._termui_impl``, a submodule only another test module imports.  The default
collection (``imports``) must give those tests their serial outcome; ``split`` (each
worker imports its share only) is the opt-in whose documented caveat they show.

A plugin that reorders tests across files (pytest-randomly and the like) needs every
test in one list; with one active, a partial collection falls back to ``full`` and the
session header says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from parallel_exec.cpus import usable_cpus

if TYPE_CHECKING:
    from conftest import PluginRunner

WORKERS = 2
#: ``test_a`` (walk ordinal 0) imports the submodule; the ``test_b*`` files after it
#: (ordinals 1-6, half of them another worker's share) only use it.
B_FILES = 6

#: Logs which worker ran it, and takes a little time.  With ``wait-for-later-workers``
#: beside it, it waits instead (up to a minute) until a worker that started after
#: collection has run one of these: however slowly workers start on a loaded machine,
#: the later ones join before the run is over.
USES_SUBMODULE = """
import os
import pathlib
import time

import pkg

HERE = pathlib.Path(__file__).parent
DEADLINE = time.monotonic() + 60


def later_worker_ran():
    return bool({"gw2", "gw3"} & set((HERE / "ran.log").read_text(encoding="utf-8").split()))


def test_uses_attribute_of_submodule():
    with open(HERE / "ran.log", "a", encoding="utf-8") as log:
        log.write(os.environ.get("PARALLEL_EXEC_WORKER", "serial") + "\\n")
    if (HERE / "wait-for-later-workers").exists():
        while not later_worker_ran() and time.monotonic() < DEADLINE:
            time.sleep(0.05)
    else:
        time.sleep(0.4)
    assert pkg.sub.VALUE == 42


def test_independent():
    pass
"""


def write_click_pattern(pytester: pytest.Pytester) -> None:
    package = pytester.mkpydir("pkg")  # an empty __init__.py: `import pkg` has no `sub`
    (package / "sub.py").write_text("VALUE = 42\n", encoding="utf-8")
    pytester.makepyfile(
        test_a="""
        import pkg.sub


        def test_imports_the_submodule():
            assert pkg.sub.VALUE == 42
        """,
        **{f"test_b{i}": USES_SUBMODULE for i in range(B_FILES)},
    )


@pytest.mark.slow
def test_default_collection_keeps_import_side_effects_of_other_test_modules(
    runner: PluginRunner,
) -> None:
    write_click_pattern(runner.pytester)

    serial, parallel = runner.assert_fidelity(workers=WORKERS)

    assert serial.counts == {"passed": 1 + 2 * B_FILES}, serial.output
    assert "AttributeError" not in parallel.output, parallel.output


@pytest.mark.slow
def test_imports_collection_keeps_import_side_effects_with_later_workers(
    runner: PluginRunner,
) -> None:
    # More workers than the first wave collects (usable CPUs): the later ones start with
    # no share and must import every test module before their first test too.
    write_click_pattern(runner.pytester)
    serial = runner.observe()
    ran_log = runner.pytester.path / "ran.log"
    ran_log.unlink()
    later_workers = usable_cpus() < 4  # else all four collect in the first wave
    if later_workers:
        (runner.pytester.path / "wait-for-later-workers").touch()
    parallel = runner.observe("--collection=imports", workers=4)

    assert parallel.differences_from(serial) == [], parallel.output
    if later_workers:
        ran = set(ran_log.read_text(encoding="utf-8").split())
        assert ran & {"gw2", "gw3"}, f"no later worker ran a test: {ran}"


@pytest.mark.slow
def test_split_collection_loses_import_side_effects_as_documented(runner: PluginRunner) -> None:
    write_click_pattern(runner.pytester)
    serial = runner.observe()
    assert serial.counts == {"passed": 1 + 2 * B_FILES}, serial.output

    # round-robin: no stealing, so the files of the second worker's share stay there.
    split = runner.observe("--collection=split", "--dist=round-robin", workers=WORKERS)

    assert split.counts.get("failed", 0) > 0, split.output
    assert "AttributeError: module 'pkg' has no attribute 'sub'" in split.output


# --------------------------------------------------------------------------- reordering

#: Stands in for pytest-randomly: registered under its name (``-p randomly`` imports
#: this file from the test directory), it runs the files in reverse order.
FAKE_RANDOMLY = """
import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    files = list(dict.fromkeys(item.path for item in items))
    rank = {path: -i for i, path in enumerate(files)}
    items.sort(key=lambda item: rank[item.path])
"""

ORDERED_FILES = {
    f"test_order_{i}": """
    def test_one():
        pass


    def test_two():
        pass
    """
    for i in range(4)
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["imports", "split"])
def test_cross_file_reordering_plugin_falls_back_to_full_collection(
    runner: PluginRunner, mode: str
) -> None:
    runner.pytester.makepyfile(randomly=FAKE_RANDOMLY, **ORDERED_FILES)
    args = ("-p", "randomly", f"--collection={mode}")

    serial, parallel = runner.assert_fidelity(*args, workers=WORKERS)

    assert serial.junit is not None
    assert serial.junit.order[0].startswith("test_order_3"), serial.junit.order
    header = [line for line in runner.header_lines(parallel.result) if "parallel_exec:" in line]
    assert len(header) == 1, header
    assert header[0].endswith(", collection=full (pytest-randomly reorders tests across files)"), (
        header
    )


@pytest.mark.slow
def test_no_fallback_when_the_reordering_plugin_is_disabled(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(randomly=FAKE_RANDOMLY, **ORDERED_FILES)

    result = runner.run("-p", "randomly", "-p", "no:randomly", workers=WORKERS)

    result.assert_outcomes(passed=8)
    header = [line for line in runner.header_lines(result) if "parallel_exec:" in line]
    assert len(header) == 1, header
    assert "collection=" not in header[0], header
