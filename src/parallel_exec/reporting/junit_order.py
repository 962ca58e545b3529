"""Keep pytest's own ``--junitxml`` test cases in collection order.

A serial run writes test cases in the order tests run, which is collection order; a
parallel run replays tests as they finish.  This consumer of the run-event stream
notes which of pytest's junitxml reporters each test created (it runs right after the
hook replay) and, at session end, puts them back in collection order.  pytest clears a
reporter once it is written, so the note is taken by object identity, not by node id.
The order is the report writers' (``writers.common.CollectionOrder``).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from .._pytest_compat import add_suite_properties, junit_reporters
from . import events
from .writers.common import CollectionOrder


class JunitOrder:
    description = "--junitxml ordering"

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._rank: dict[int, int] = {}
        self._seen = 0
        self._order = CollectionOrder()

    def _reporters(self) -> list[Any] | None:
        return junit_reporters(self.config)

    def __call__(self, event: events.RunEvent) -> None:
        if isinstance(event, events.WorkerFinished):
            add_suite_properties(self.config, event.suite_properties)
            return
        if isinstance(event, events.ShardSelected):
            add_suite_properties(self.config, event.properties())
            return
        reporters = self._reporters()
        if reporters is None:
            return
        if isinstance(event, events.CollectionFinished):
            self._order = CollectionOrder(event.nodeids)
            rank = -1  # collection errors come first, as in a serial run
        elif isinstance(event, events.TestFinished):
            rank = self._order.place(event.nodeid)
        else:
            return
        for reporter in reporters[self._seen :]:
            self._rank[id(reporter)] = rank
        self._seen = len(reporters)

    def reorder(self) -> None:
        reporters = self._reporters()
        if reporters:
            reporters.sort(key=lambda r: self._rank.get(id(r), math.inf))
