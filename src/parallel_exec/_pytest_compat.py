"""Every use of pytest's private API, in one place.

pytest's public API does not cover what a plugin that runs sessions in other processes
needs: building a config from an argument list as ``pytest.main`` does, the terminal
reporter's writer, the ``--junitxml`` reporter object.  Each use is here, with why it is
needed and the pytest versions it was checked against; the rest of the package uses
these functions and nothing under ``_pytest``.

Checked by reading each of these in pytest 8.0.2 and 9.2.0, and by running the unit
suite with both (the end-to-end suite runs with the pinned newest only); versions in
between were not tried.  "8.0 -> 9.2" below means the same in both.  Imported by
workers: it imports nothing but pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TextIO

import pytest

# Report representations.  ``TerminalRepr`` is the base class pytest's terminal writes
# with ``toterminal``; a failure text rebuilt in the controller must be one (so the
# short summary formats it as serially).  ``CollectErrorRepr`` is what pytest gives a
# collection error.  Both in ``_pytest`` since pytest 3; unchanged 8.0 -> 9.2.
from _pytest._code.code import TerminalRepr
from _pytest._io import TerminalWriter
from _pytest.reports import CollectErrorRepr

__all__ = [
    "CollectErrorRepr",
    "TerminalRepr",
    "TerminalWriter",
    "add_suite_properties",
    "basetemp",
    "builtin_plugin_modules",
    "end_current_line",
    "ensure_unconfigure",
    "ini_keys",
    "install_worker_logxml",
    "junit_reporters",
    "prepare_config",
    "report_collected",
    "sort_terminal_stats",
    "take_worker_logxml",
    "terminal_to",
    "unblock_plugin",
]


def prepare_config(args: list[str], plugins: list[str | object]) -> pytest.Config:
    """A config from a command line, exactly as ``pytest.main`` builds one (ini files,
    ``addopts``, ``PYTEST_ADDOPTS``, ``-p``), without running a session: a worker runs
    its own session loop.  ``_prepareconfig`` (same signature 8.0 -> 9.2)."""
    from _pytest.config import _prepareconfig

    return _prepareconfig(args, plugins=plugins)  # type: ignore[arg-type]


def ensure_unconfigure(config: pytest.Config) -> None:
    """Run ``pytest_unconfigure`` and the config's cleanups, as ``pytest.main`` does
    after ``pytest_cmdline_main``.  ``Config._ensure_unconfigure`` (8.0 -> 9.2)."""
    config._ensure_unconfigure()


def builtin_plugin_modules() -> tuple[str, ...]:
    """The modules of pytest's built-in plugins (``_pytest.<name>``), imported once by
    the fork server so every forked worker has them.  ``default_plugins`` (8.0 -> 9.2;
    a missing name is skipped by the caller)."""
    from _pytest.config import default_plugins

    return tuple(f"_pytest.{name}" for name in default_plugins)


def ini_keys(config: pytest.Config) -> list[str]:
    """The keys of the ini file pytest read.  ``Config._inicfg`` (9.x; ``inicfg`` is
    deprecated there) or ``Config.inicfg`` (8.x)."""
    values = getattr(config, "_inicfg", None)
    if values is None:
        values = getattr(config, "inicfg", None) or {}
    return [str(key) for key in values]


def unblock_plugin(pluginmanager: pytest.PytestPluginManager, name: str) -> None:
    """Undo ``set_blocked(name)`` (``-p no:NAME``).  pluggy's ``unblock`` where it has
    one (1.7 has), else the blocked entry of ``PluginManager._name2plugin``."""
    unblock = getattr(pluginmanager, "unblock", None)
    if unblock is not None:
        unblock(name)
    elif pluginmanager._name2plugin.get(name, ...) is None:
        del pluginmanager._name2plugin[name]


def _reporter(config: pytest.Config) -> Any:
    return config.pluginmanager.get_plugin("terminalreporter")


def terminal_to(config: pytest.Config, stream: TextIO) -> None:
    """Point the terminal reporter's writer at ``stream``: a worker's writes only what
    plugins write during a test (``worker.session.PhaseOutput``); under
    ``--report-tap -`` the controller's moves to stderr.  ``TerminalReporter._tw`` and
    ``create_terminal_writer`` (8.0 -> 9.2: no public setter)."""
    from _pytest.config import create_terminal_writer

    reporter = _reporter(config)
    if reporter is None or not hasattr(reporter, "_tw"):
        return
    reporter._tw = create_terminal_writer(config, stream)


def one_progress_stream(config: pytest.Config) -> None:
    """Results arrive from many files at once: print them as one stream of outcome
    characters with the percentage, without a file name at every switch, as
    pytest-xdist does (``TerminalReporter.showfspath``, 8.0 -> 9.2)."""
    reporter = _reporter(config)
    if reporter is not None and hasattr(reporter, "showfspath"):
        reporter.showfspath = False


def terminal_file(config: pytest.Config) -> Any:
    """The file the terminal reporter writes to (None: no terminal reporter).
    ``TerminalReporter._tw`` and ``TerminalWriter._file`` (8.0 -> 9.2)."""
    writer = getattr(_reporter(config), "_tw", None)
    return getattr(writer, "_file", None)


def set_terminal_file(config: pytest.Config, file: Any) -> None:
    """Make the terminal reporter write to ``file`` (see ``terminal_file``)."""
    writer = getattr(_reporter(config), "_tw", None)
    if writer is not None and hasattr(writer, "_file"):
        writer._file = file


def end_current_line(config: pytest.Config) -> None:
    """End the terminal's current line if it has text (progress dots), so that a line
    of ours starts on a new one.  ``TerminalReporter._tw`` and
    ``TerminalWriter.width_of_current_line`` (8.0 -> 9.2)."""
    writer = getattr(_reporter(config), "_tw", None)
    if writer is not None and getattr(writer, "width_of_current_line", False):
        writer.line()


def report_collected(config: pytest.Config, count: int) -> None:
    """pytest's own ``collected N items / M deselected`` line for a collection the
    controller never made itself.  ``TerminalReporter._numcollected`` feeds
    ``report_collect`` (8.0 -> 9.2)."""
    reporter = _reporter(config)
    if reporter is None or not hasattr(reporter, "report_collect"):
        return
    reporter._numcollected = count
    reporter.report_collect(True)


def sort_terminal_stats(config: pytest.Config, key: Callable[[Any], int]) -> None:
    """Sort the terminal reporter's reports (FAILURES, ERRORS and the short summary
    follow that order).  ``TerminalReporter.stats`` is a documented attribute but not
    a stable API; the warnings list keeps its order (8.0 -> 9.2)."""
    stats = getattr(_reporter(config), "stats", None)
    if not isinstance(stats, dict):
        return
    for name, reports in stats.items():
        if name != "warnings" and isinstance(reports, list):
            reports.sort(key=key)


def basetemp(config: pytest.Config) -> str | None:
    """The session's base temporary directory (each worker gets a directory in it).
    ``Config._tmp_path_factory`` is set by the tmpdir plugin (8.0 -> 9.2); None when
    that plugin is disabled."""
    factory = getattr(config, "_tmp_path_factory", None)
    return str(factory.getbasetemp()) if factory is not None else None


def _logxml(config: pytest.Config) -> Any:
    """``--junitxml``'s ``LogXML``, or None.  ``_pytest.junitxml.xml_key`` (8.0 -> 9.2)."""
    from _pytest import junitxml

    return config.stash.get(junitxml.xml_key, None)


def junit_reporters(config: pytest.Config) -> list[Any] | None:
    """The ``--junitxml`` test-case reporters in the order the file will list them
    (``LogXML.node_reporters_ordered``, 8.0 -> 9.2); None without ``--junitxml``."""
    xml = _logxml(config)
    return getattr(xml, "node_reporters_ordered", None) if xml is not None else None


def add_suite_properties(config: pytest.Config, properties: Iterable[tuple[str, str]]) -> None:
    """Suite properties recorded in workers (``record_testsuite_property``), once each.
    ``LogXML.global_properties`` (8.0 -> 9.2)."""
    xml = _logxml(config)
    if xml is None:
        return
    for prop in properties:
        if prop not in xml.global_properties:
            xml.global_properties.append(prop)


def install_worker_logxml(config: pytest.Config) -> None:
    """An unregistered ``LogXML`` in a worker: pytest does not open ``--junitxml`` there,
    so ``record_property`` would not warn about xunit2 and ``record_testsuite_property``
    would record nothing.  It writes no file.  ``LogXML``'s positional signature is
    unchanged 8.0 -> 9.2."""
    from _pytest import junitxml

    config.stash[junitxml.xml_key] = junitxml.LogXML(
        config.option.xmlpath,
        config.option.junitprefix,
        config.getini("junit_suite_name"),
        config.getini("junit_logging"),
        config.getini("junit_duration_report"),
        config.getini("junit_family"),
        config.getini("junit_log_passing_tests"),
    )


def take_worker_logxml(config: pytest.Config) -> list[tuple[str, str]]:
    """Remove the worker's ``LogXML`` (pytest's own unconfigure would try to unregister
    it) and return its suite properties."""
    from _pytest import junitxml

    xml = config.stash.get(junitxml.xml_key, None)
    if xml is None:
        return []
    del config.stash[junitxml.xml_key]
    return list(xml.global_properties)
