"""Keep pytest's own ``--junitxml`` test cases in collection order.

A serial run writes test cases in the order tests run, which is collection order; a
parallel run replays tests as they finish.  This consumer of the run-event stream
notes which of pytest's junitxml reporters each test created (it runs right after the
hook replay) and, at session end, puts them back in collection order.  pytest clears a
reporter once it is written, so the note is taken by object identity, not by node id.
"""

from __future__ import annotations

from typing import Any

import pytest

from .._pytest_compat import junit_reporters
from . import events


class JunitOrder:
    description = "--junitxml ordering"

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._rank: dict[int, int] = {}
        self._seen = 0
        self._index: dict[str, int] = {}

    def _reporters(self) -> list[Any] | None:
        return junit_reporters(self.config)

    def __call__(self, event: events.RunEvent) -> None:
        reporters = self._reporters()
        if reporters is None:
            return
        if isinstance(event, events.CollectionFinished):
            self._index = {nodeid: i for i, nodeid in enumerate(event.nodeids)}
            rank = -1  # collection errors come first, as in a serial run
        elif isinstance(event, events.TestFinished):
            rank = self._index.get(event.nodeid, len(self._index))
        else:
            return
        for reporter in reporters[self._seen :]:
            self._rank[id(reporter)] = rank
        self._seen = len(reporters)

    def reorder(self) -> None:
        reporters = self._reporters()
        if reporters:
            reporters.sort(key=lambda r: self._rank.get(id(r), len(self._index)))
