"""Partial collection: the first workers share the test files instead of each collecting all.

With ``--collection=split`` each first-wave worker imports only its share of the test
modules, and a module is imported elsewhere only when work from it moves (stealing).
With ``--collection=imports`` (the default) every worker imports every test module, as
a serial run does, but builds the tests of its share only.  These runs check what that
must not change: every test runs with its serial outcome, ``-k`` / ``--deselect`` select
the same tests, a collection error is reported once, and a warning raised while
importing is counted once, not once per worker.

Every test module here appends ``<module> <worker>`` to ``imports.log`` when it is
imported (module-level code), and ``START <worker>`` when a module's first test runs;
what a process logged before its first ``START`` is its own collection.  Stealing may
move a file later (timing-dependent), so the split assertions look at what each worker
imported before its first test: its share, not every file.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Observation, PluginRunner

WORKERS = 2
FILE_COUNT = 6
MODULES = tuple(f"test_split_{i}" for i in range(FILE_COUNT))
LOG_NAME = "imports.log"
ERRORS_HEADER = re.compile(r"^=+ ERRORS =+$")

LOGGING_MODULE = """
import os
import pathlib

import pytest

with open(pathlib.Path(__file__).with_name("imports.log"), "a", encoding="utf-8") as _log:
    _log.write(f"{__name__} {os.environ.get('PARALLEL_EXEC_WORKER', 'serial')}\\n")


@pytest.fixture(scope="module", autouse=True)
def _log_start():
    with open(pathlib.Path(__file__).with_name("imports.log"), "a", encoding="utf-8") as log:
        log.write(f"START {os.environ.get('PARALLEL_EXEC_WORKER', 'serial')}\\n")


@pytest.mark.parametrize("n", range(4))
def test_fast(n):
    assert n >= 0


def test_slow_name():
    pass


class TestGrouped:
    def test_in_class(self):
        pass
"""

#: Tests per module: four parametrized, one plain, one in a class.
TESTS_PER_MODULE = 6


def write_suite(pytester: pytest.Pytester, extra: dict[str, str] | None = None) -> None:
    pytester.makepyfile(**dict.fromkeys(MODULES, LOGGING_MODULE), **(extra or {}))


def take_log(pytester: pytest.Pytester) -> list[tuple[str, str]]:
    """The log's ``(module or START, worker)`` records since the last call (then reset)."""
    log = Path(pytester.path, LOG_NAME)
    if not log.exists():
        return []
    records = [tuple(line.split()) for line in log.read_text(encoding="utf-8").splitlines()]
    log.unlink()
    assert all(len(r) == 2 for r in records), records
    return [(first, worker) for first, worker in records]


def take_imports(pytester: pytest.Pytester) -> list[tuple[str, str]]:
    """The ``(module, worker)`` import records since the last call (the log is reset)."""
    return [record for record in take_log(pytester) if record[0] != "START"]


def collected_before_running(records: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Per worker, the modules it imported before it ran its first test."""
    before: dict[str, set[str]] = {}
    started: set[str] = set()
    for first, worker in records:
        if first == "START":
            started.add(worker)
            before.setdefault(worker, set())
        elif worker not in started:
            before.setdefault(worker, set()).add(first)
    return before


def assert_same_outcomes(serial: Observation, parallel: Observation) -> None:
    assert parallel.exit_code == serial.exit_code, parallel.output
    assert parallel.counts == serial.counts, parallel.output
    assert parallel.outcomes == serial.outcomes
    assert parallel.collection_errors == serial.collection_errors
    assert "worker crashed" not in parallel.output, parallel.output


# --------------------------------------------------------------------------- who imports


def test_split_collection_does_not_import_every_file_in_every_worker(
    runner: PluginRunner,
) -> None:
    write_suite(runner.pytester)
    serial = runner.observe()
    assert serial.exit_code == 0, serial.output
    assert serial.counts == {"passed": FILE_COUNT * TESTS_PER_MODULE}
    assert sorted(take_imports(runner.pytester)) == [(m, "serial") for m in MODULES]

    parallel = runner.observe("--collection=split", workers=WORKERS)
    assert_same_outcomes(serial, parallel)
    log = take_log(runner.pytester)
    imports = [record for record in log if record[0] != "START"]

    modules = Counter(module for module, _ in imports)
    assert set(modules) == set(MODULES), f"a module was never imported: {imports}"
    # No worker imported every file before it began (that is --collection=full).
    before = collected_before_running(log)
    assert all(len(m) < FILE_COUNT for m in before.values()), log
    # Only workers import test modules, never the controller, and each module at most
    # once per worker.
    assert all(worker.startswith("gw") for _, worker in imports), imports
    assert len(set(imports)) == len(imports), imports


def test_split_collection_imports_a_share_per_worker(runner: PluginRunner) -> None:
    write_suite(runner.pytester)
    # Without history the run uses the load strategy, which starts each worker on its
    # own share (a timed plan may move a file before the first test, for balance).
    split = runner.run("-q", "--no-history", "--collection=split", workers=WORKERS)
    split_log = take_log(runner.pytester)

    split.assert_outcomes(passed=FILE_COUNT * TESTS_PER_MODULE)
    assert {m for m, _ in split_log if m != "START"} == set(MODULES)
    # Each worker started with its share: half the files (stealing may add more later,
    # which depends on timing and is not asserted).
    before = collected_before_running(split_log)
    assert sorted(before) == ["gw0", "gw1"], split_log
    assert all(len(modules) == FILE_COUNT // WORKERS for modules in before.values()), split_log
    assert set.union(*before.values()) == set(MODULES), split_log


#: Logs how many tests each worker built during its collection (``imports`` builds the
#: tests of the worker's share only, ``full`` all of them).
BUILT_CONFTEST = """
import os
import pathlib


def pytest_collection_finish(session):
    with open(pathlib.Path(__file__).with_name("built.log"), "a", encoding="utf-8") as log:
        worker = os.environ.get("PARALLEL_EXEC_WORKER", "serial")
        log.write(f"{worker} {len(session.items)}\\n")
"""


def take_built(pytester: pytest.Pytester) -> dict[str, int]:
    log = Path(pytester.path, "built.log")
    built = dict(line.split() for line in log.read_text(encoding="utf-8").splitlines())
    log.unlink()
    return {worker: int(count) for worker, count in built.items()}


def test_imports_collection_is_the_default(runner: PluginRunner) -> None:
    runner.pytester.makeconftest(BUILT_CONFTEST)
    write_suite(runner.pytester)
    default = runner.run("-q", "--no-history", workers=WORKERS)
    default_log, default_built = take_log(runner.pytester), take_built(runner.pytester)
    imports = runner.run("-q", "--no-history", "--collection=imports", workers=WORKERS)
    imports_log, imports_built = take_log(runner.pytester), take_built(runner.pytester)

    for result in (default, imports):
        result.assert_outcomes(passed=FILE_COUNT * TESTS_PER_MODULE)
    for log, built in ((default_log, default_built), (imports_log, imports_built)):
        # Every worker imported every module before its first test, each once...
        before = collected_before_running(log)
        assert sorted(before) == ["gw0", "gw1"], log
        assert all(modules == set(MODULES) for modules in before.values()), log
        imported = [record for record in log if record[0] != "START"]
        assert len(imported) == len(set(imported)) == WORKERS * FILE_COUNT, log
        # ...but built the tests of its share only.
        assert built == dict.fromkeys(("gw0", "gw1"), FILE_COUNT // WORKERS * TESTS_PER_MODULE)


def test_full_collection_imports_every_file_in_every_worker(runner: PluginRunner) -> None:
    write_suite(runner.pytester)
    serial = runner.observe()
    take_imports(runner.pytester)

    parallel = runner.observe("--collection=full", workers=WORKERS)
    assert_same_outcomes(serial, parallel)
    log = take_log(runner.pytester)
    imports = [record for record in log if record[0] != "START"]
    assert all(m == set(MODULES) for m in collected_before_running(log).values()), log

    assert len(imports) == WORKERS * FILE_COUNT, imports
    by_worker: dict[str, set[str]] = {}
    for module, worker in imports:
        by_worker.setdefault(worker, set()).add(module)
    assert len(by_worker) == WORKERS, imports
    assert all(modules == set(MODULES) for modules in by_worker.values()), by_worker


# --------------------------------------------------------------------------- selection


@pytest.mark.parametrize("mode", ["imports", "split", "full"])
def test_k_and_deselect_select_the_same_tests_as_serial(runner: PluginRunner, mode: str) -> None:
    write_suite(runner.pytester)
    args = (
        "-k",
        "not slow_name and not in_class",
        "--deselect",
        "test_split_1.py::test_fast[2]",
        "--deselect",
        "test_split_4.py::test_fast[0]",
    )
    serial = runner.observe(*args)
    # 6 modules x (slow_name + in_class) by -k, two more by --deselect.
    assert serial.counts == {"passed": 22, "deselected": 14}, serial.output

    parallel = runner.observe(*args, f"--collection={mode}", workers=WORKERS)

    assert_same_outcomes(serial, parallel)
    assert parallel.counts["deselected"] == 14
    ran = set(parallel.outcomes)
    assert not any("slow_name" in key or "in_class" in key for key in ran), ran
    assert not any(
        key.endswith(("test_split_1::test_fast[2]", "test_split_4::test_fast[0]")) for key in ran
    ), ran


def test_collected_line_shows_deselected_and_selected_like_serial(runner: PluginRunner) -> None:
    write_suite(runner.pytester)
    args = ("-k", "not slow_name and not in_class", "--deselect", "test_split_1.py::test_fast[2]")
    serial = runner.run(*args)
    parallel = runner.run(*args, workers=WORKERS)

    def collected_line(result: pytest.RunResult) -> str:
        return next(line for line in result.outlines if line.startswith("collected "))

    assert collected_line(serial) == "collected 36 items / 13 deselected / 23 selected"
    assert collected_line(parallel) == collected_line(serial)


# --------------------------------------------------------------------------- errors


BROKEN_MODULE = """
import module_that_does_not_exist_for_split_collection


def test_never():
    pass
"""


@pytest.mark.parametrize("mode", ["imports", "split", "full"])
def test_collection_error_in_one_file_is_reported_once(runner: PluginRunner, mode: str) -> None:
    write_suite(runner.pytester, {"test_split_3_broken": BROKEN_MODULE})
    serial = runner.observe()
    assert serial.exit_code == 2

    parallel = runner.observe(f"--collection={mode}", workers=WORKERS)

    assert parallel.exit_code == 2, parallel.output
    assert parallel.collection_errors == ("test_split_3_broken.py",)
    assert parallel.collection_errors == serial.collection_errors
    assert "worker crashed" not in parallel.output, parallel.output
    assert parallel.counts == serial.counts == {"errors": 1}
    output = parallel.output
    assert output.count("ERROR collecting test_split_3_broken.py") == 1, output
    assert "Interrupted: 1 error during collection" in output
    # Not once per worker in the ERRORS section either: the error's own line appears as
    # often as serially.  (The short summary is left out: on CI pytest appends the whole
    # collect error to its line there, which makes it a second copy by design.)
    needle = "No module named 'module_that_does_not_exist_for_split_collection'"

    def error_lines(observation: Observation) -> int:
        lines = observation.result.outlines
        start = next(i for i, line in enumerate(lines) if ERRORS_HEADER.match(line))
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("="))
        return sum(1 for line in lines[start:end] if line.startswith("E ") and needle in line)

    assert error_lines(parallel) == error_lines(serial) == 1, output
    runner.assert_no_traceback(parallel.result)


# --------------------------------------------------------------------------- warnings

WARNING_MODULE = """
import warnings

warnings.warn("import-time warning from {name}", UserWarning)


def test_one():
    pass


def test_two():
    pass
"""

WARNING_BUG = (
    "source bug: a warning raised while a worker collects is recorded by pytest's "
    "warnings plugin when the pytest_collection hook returns, after the worker's "
    "pytest_collection_finish has already sent Collected; it then travels in the "
    "worker's first Progress, which the controller drops while the first wave is still "
    "collecting (no scheduler yet) and counts once per worker otherwise"
)


@pytest.mark.parametrize("mode", ["imports", "split", "full"])
def test_module_level_warning_is_counted_once(runner: PluginRunner, mode: str) -> None:
    write_suite(
        runner.pytester,
        {f"test_warns_{i}": WARNING_MODULE.replace("{name}", f"test_warns_{i}") for i in range(4)},
    )
    serial = runner.observe()
    assert serial.counts.get("warnings") == 4, serial.output

    parallel = runner.observe(f"--collection={mode}", workers=WORKERS)

    assert_same_outcomes(serial, parallel)
    for i in range(4):
        assert parallel.output.count(f"UserWarning: import-time warning from test_warns_{i}") == 1


def test_root_conftest_warning_is_counted_once(runner: PluginRunner) -> None:
    runner.pytester.makeconftest(
        """
        import warnings

        warnings.warn("warning from the root conftest", UserWarning)
        """
    )
    write_suite(runner.pytester)
    serial = runner.observe()
    assert serial.counts.get("warnings") == 1, serial.output

    parallel = runner.observe(workers=WORKERS)

    assert_same_outcomes(serial, parallel)
    assert parallel.output.count("UserWarning: warning from the root conftest") == 1


def test_subdirectory_conftest_warning_is_counted_once(runner: PluginRunner) -> None:
    # Not a test* directory, so pytest imports this conftest during collection, in
    # every worker (the root one is imported at configuration, in the controller too).
    sub = runner.pytester.mkdir("sub")
    (sub / "conftest.py").write_text(
        "import warnings\n\nwarnings.warn('warning from sub/conftest', UserWarning)\n",
        encoding="utf-8",
    )
    for i in range(3):
        (sub / f"test_sub_{i}.py").write_text("def test_a():\n    pass\n", encoding="utf-8")
    write_suite(runner.pytester)
    serial = runner.observe()
    assert serial.counts.get("warnings") == 1, serial.output

    parallel = runner.observe(workers=WORKERS)

    assert_same_outcomes(serial, parallel)
    assert parallel.output.count("UserWarning: warning from sub/conftest") == 1


# --------------------------------------------------------------------------- file-less items

#: Items whose parent is a directory collector, not a file: every worker collects them
#: (they belong to no file share), and the merge keeps one copy.
FILE_LESS_CONFTEST = """
import pytest


class SpecItem(pytest.Item):
    def runtest(self):
        pass

    def reportinfo(self):
        return self.path, 0, self.name


class SpecDirectory(pytest.Directory):
    def collect(self):
        for name in ("spec_one", "spec_two"):
            yield SpecItem.from_parent(self, name=name)


def pytest_collect_directory(path, parent):
    if path.name == "zz_specs":
        return SpecDirectory.from_parent(parent, path=path)
"""


def write_file_less_suite(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FILE_LESS_CONFTEST)
    pytester.mkdir("zz_specs")
    write_suite(pytester)


def test_file_less_items_run_once(runner: PluginRunner) -> None:
    write_file_less_suite(runner.pytester)
    serial = runner.observe()
    assert serial.counts == {"passed": FILE_COUNT * TESTS_PER_MODULE + 2}, serial.output

    parallel = runner.observe(workers=WORKERS)

    assert_same_outcomes(serial, parallel)


def test_file_less_items_keep_their_serial_position(runner: PluginRunner) -> None:
    write_file_less_suite(runner.pytester)
    serial = runner.observe()
    parallel = runner.observe(workers=WORKERS)

    assert serial.junit is not None
    assert parallel.junit is not None
    assert serial.junit.order[-2:] == ("zz_specs::spec_one", "zz_specs::spec_two")
    assert parallel.junit.order == serial.junit.order


def test_deselected_file_less_item_is_counted_once(runner: PluginRunner) -> None:
    write_file_less_suite(runner.pytester)
    serial = runner.observe("-k", "not spec_one")
    assert serial.counts["deselected"] == 1, serial.output

    parallel = runner.observe("-k", "not spec_one", workers=WORKERS)

    assert_same_outcomes(serial, parallel)
