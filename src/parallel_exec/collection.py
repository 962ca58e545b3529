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
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest


class SplitCollection:
    def __init__(self, config: pytest.Config, share: tuple[int, int] | None) -> None:
        self.config = config
        self.share = share
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
