"""The retry book (``--retries N``): which failed attempts run again.

A failed attempt (a failure or error in any phase, not a crash) with retries left is
kept here and not published; only the final attempt is, with the earlier ones attached,
so pytest's hooks see one result per test.  Where the retry runs is the scheduler's
decision (``Scheduler.retry``), not this book's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..reporting import events


class RetryBook:
    def __init__(self, retries: int) -> None:
        self.retries = retries
        #: Earlier failed attempts of tests being retried, by canonical index.
        self._attempts: dict[int, list[events.Attempt]] = {}
        #: Reports published before the next attempt's own: a crash a plugin turned
        #: into a ``rerun`` (``pytest_handlecrashitem``), as a worker's own re-run
        #: (pytest-rerunfailures) reports it.
        self._carried: dict[int, list[Any]] = {}

    def retry(self, index: int, worker_id: str, reports: Sequence[Any]) -> bool:
        """Whether this attempt runs again instead of being published; if so it is
        kept as an earlier attempt."""
        if len(self._attempts.get(index, ())) >= self.retries:
            return False
        if events.outcome_of(reports) not in events.FAILING_OUTCOMES:
            return False
        self._attempts.setdefault(index, []).append(events.Attempt(worker_id, tuple(reports)))
        return True

    def earlier(self, index: int) -> tuple[events.Attempt, ...]:
        """The earlier attempts of a test whose final attempt is being published."""
        return tuple(self._attempts.pop(index, ()))

    def carry(self, index: int, reports: Sequence[Any]) -> None:
        """Publish ``reports`` before those of the test's next attempt."""
        self._carried.setdefault(index, []).extend(reports)

    def carried(self, index: int) -> tuple[Any, ...]:
        return tuple(self._carried.pop(index, ()))
