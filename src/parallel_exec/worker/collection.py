"""Worker-side collection: which test files this worker imports, and the rest on demand.

Collecting is a large part of a short suite's cost (importing every module and building
every item), and in the model pytest-xdist uses every worker pays all of it.  Here the
first workers of a run split the files between them: each walks the same directory tree
(cheap: no test module is imported), numbers the files it meets in walk order, and
collects only the files that fall to its share.  A file outside the share is answered
with an empty, passed report, so it is neither imported nor turned into items; it is
kept, and collected later if work from it is assigned to this worker.

``share=(k, n)`` takes files ``k, k+n, k+2n...``; ``share=(0, 1)`` is every file (the
``full`` collection mode); ``share=None`` is no file up front (a worker that joins
later and only takes work over).

Importing only a share changes what a test sees: in a serial run (and with xdist) every
test module has been imported before the first test runs, and a suite may rely on that
without knowing it (click's ``test_echo_via_pager.py`` uses ``click._termui_impl``, which
only another test module imports).  So with ``import_all`` (the ``imports`` mode, the
default) a file outside the share is still *imported* when the walk meets it, in walk
order, with pytest's own import (``Module.obj``: import mode, ``rootdir``, assertion
rewriting and ``pytest_plugins`` as serially), only its tests are not built.  A worker
with no share imports every module the same way, so every test runs in a process where
every test module was imported at collection.  An import that fails outside the share
is left to the file's owner to report, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest


class SplitCollection:
    def __init__(
        self, config: pytest.Config, share: tuple[int, int] | None, import_all: bool = False
    ) -> None:
        self.config = config
        self.share = share
        self.import_all = import_all
        #: Node ids of every file node met during the walk, in walk order.
        self.files: list[str] = []
        self._ordinal: dict[pytest.Collector, int] = {}
        self._collected_paths: set[str] = set()
        self._deferred: dict[str, list[pytest.Collector]] = {}
        self._walking = True
        self._session: pytest.Session | None = None
        self.items: dict[str, pytest.Item] = {}

    @property
    def share_index(self) -> int | None:
        return None if self.share is None else self.share[0]

    def _owns(self, ordinal: int) -> bool:
        if self.share is None:
            return False
        index, count = self.share
        return ordinal % count == index

    @pytest.hookimpl(tryfirst=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> pytest.CollectReport | None:
        if not self._walking or not isinstance(collector, pytest.File):
            return None
        if collector in self._ordinal:
            return None
        ordinal = len(self.files)
        self.files.append(collector.nodeid)
        self._ordinal[collector] = ordinal
        if self._owns(ordinal):
            self._collected_paths.add(collector.nodeid)
            return None
        self._deferred.setdefault(collector.nodeid, []).append(collector)
        if self.import_all:
            import_only(collector)
        return pytest.CollectReport(collector.nodeid, "passed", None, [])

    def walk_finished(self, session: pytest.Session) -> None:
        self._walking = False
        self._session = session
        for item in session.items:
            self.items.setdefault(item.nodeid, item)

    def file_of(self, item: pytest.Item) -> int:
        """The walk ordinal of the file ``item`` belongs to (-1: not inside a file)."""
        node = item.getparent(pytest.File)  # type: ignore[type-abstract]
        return self._ordinal.get(node, -1) if node is not None else -1

    def reports_for(self, nodeid: str) -> bool:
        """Whether this worker is the one to report a collection event at ``nodeid``.

        Events inside a file come from the worker that collected it; events above any
        file (a conftest, a directory) happen in every worker and are reported by the
        worker holding share 0 only, so that each is counted once.
        """
        path = nodeid.split("::", 1)[0]
        if path in self._collected_paths or path in self._deferred:
            return path in self._collected_paths
        return self.share_index == 0

    def resolve(self, nodeids: Iterable[str]) -> tuple[list[pytest.Item], list[str]]:
        """Items for ``nodeids``, collecting their files first where needed."""
        found: list[pytest.Item] = []
        missing: list[str] = []
        for nodeid in nodeids:
            item = self.items.get(nodeid)
            if item is None:
                self._collect_path(nodeid.split("::", 1)[0])
                item = self.items.get(nodeid)
            if item is None:
                missing.append(nodeid)
            else:
                found.append(item)
        return found, missing

    def _collect_path(self, path: str) -> None:
        nodes = self._deferred.pop(path, [])
        session = self._session
        if not nodes or session is None:
            return
        self._collected_paths.add(path)
        new: list[pytest.Item] = []
        for node in nodes:
            new.extend(session.genitems(node))
        if new:
            # Deselection (-k, -m, --deselect) and plugins apply to late items too.
            self.config.hook.pytest_collection_modifyitems(
                session=session, config=self.config, items=new
            )
        for item in new:
            self.items.setdefault(item.nodeid, item)
            session.items.append(item)


def import_only(collector: pytest.Collector) -> None:
    """Import the module of a file collector outside this worker's share, as collecting it
    would, without building its tests.

    ``Module.obj`` is pytest's own import of a test module (``importtestmodule``: import
    mode, ``rootdir``, ``consider_namespace_packages``, assertion rewriting, the module's
    ``pytest_plugins``), and it keeps the module on the node, so collecting the file later
    on demand does not import it again.  It covers ``DoctestModule`` too (a ``Module``
    since pytest 8.0; on 8.0 its ``collect`` imports with ``import_path`` again, which
    returns the module already in ``sys.modules``).  Files that are not modules (doctest
    text files, plugins' own file types) have nothing to import, and a ``conftest.py``
    collected by ``--doctest-modules`` was imported as a conftest already.

    Whatever the import raises (an import error, a module-level skip, ``pytest.exit``)
    is the owner's to report; here it is dropped.  What pytest's own collection lets
    through (``KeyboardInterrupt``, ``SystemExit``: ``pytest_make_collect_report``'s
    ``reraise``) goes on, as it would in the owner.
    """
    if not isinstance(collector, pytest.Module) or collector.path.name == "conftest.py":
        return
    try:
        collector.obj  # noqa: B018 - the property imports the module
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # the file's owner reports it, not this worker
        pass


# ------------------------------------------------------------------ cross-file reordering


def _randomly_reorders(config: pytest.Config) -> bool:
    return bool(config.getoption("randomly_reorganize", True))  # --randomly-dont-reorganize


def _order_reorders(config: pytest.Config) -> bool:
    return str(config.getoption("order_scope", None)) not in ("module", "class")


def _repeat_reorders(config: pytest.Config) -> bool:
    return str(config.getoption("repeat_scope", None)) == "session"


def _random_order_reorders(config: pytest.Config) -> bool:
    # pytest-random-order >= 1.0 marks untouched defaults with a "default:" prefix and
    # shuffles only when asked; earlier versions always shuffle.  Every bucket but
    # "none" shuffles the buckets themselves, across files.
    bucket = str(config.getoption("random_order_bucket", "none"))
    seed = str(config.getoption("random_order_seed", "default:"))
    enabled = bool(config.getoption("random_order_enabled", False)) or not (
        bucket.startswith("default:") and seed.startswith("default:")
    )
    return enabled and bucket.removeprefix("default:") != "none"


#: Plugins that reorder tests across files in ``pytest_collection_modifyitems``.  With
#: a partial collection (``imports``, ``split``) each worker sees the items of its share
#: only, so such an order cannot be made, and the merge puts files back in walk order:
#: when one of these is active the run collects ``full`` instead.  Each entry: the name
#: shown, the names the plugin registers under (entry-point name, module name for
#: ``-p``), an option only it defines (its presence means it is loaded, whatever the
#: name), and whether it reorders across files with this run's options.
Reorders = Callable[[pytest.Config], bool]
CROSS_FILE_REORDERING: tuple[tuple[str, tuple[str, ...], str, Reorders], ...] = (
    ("pytest-randomly", ("randomly", "pytest_randomly"), "randomly_seed", _randomly_reorders),
    ("pytest-order", ("pytest_order", "order"), "order_scope", _order_reorders),
    (
        "pytest-repeat --repeat-scope=session",
        ("repeat", "pytest_repeat"),
        "repeat_scope",
        _repeat_reorders,
    ),
    (
        "pytest-random-order",
        ("random_order", "random-order", "random_order.plugin", "pytest_random_order"),
        "random_order_bucket",
        _random_order_reorders,
    ),
)


def _syrupy_checks_unused(config: pytest.Config) -> bool:
    return not config.getoption("disable_unused_snapshots", False)


#: Plugins that compare, in each worker, the tests it collected with the tests it ran:
#: syrupy's unused-snapshot detection (tests built on demand for moved work would be
#: "missing from collected items", the detection skipped and the exit code changed).
#: Same shape as ``CROSS_FILE_REORDERING``; with one active the run collects ``full``.
WHOLE_COLLECTION_PER_WORKER: tuple[tuple[str, tuple[str, ...], str, Reorders], ...] = (
    (
        "syrupy (unused-snapshot detection)",
        ("syrupy",),
        "disable_unused_snapshots",
        _syrupy_checks_unused,
    ),
)


def cross_file_reordering(config: pytest.Config) -> str | None:
    """Why an active plugin needs every worker to collect everything (None: none
    does): it reorders tests across files, or it needs each worker to have collected
    every test it runs."""
    for table, why in (
        (CROSS_FILE_REORDERING, "reorders tests across files"),
        (WHOLE_COLLECTION_PER_WORKER, "needs every test a worker runs in its collection"),
    ):
        for shown, names, option, needs in table:
            loaded = hasattr(config.option, option) or any(
                config.pluginmanager.hasplugin(name) for name in names
            )
            if loaded and needs(config):
                return f"{shown} {why}"
    return None
