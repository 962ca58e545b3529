"""Decisions and the interface every scheduler implements."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Assign:
    """Append ``tests`` (canonical indices) to ``worker``'s queue."""

    worker: str
    tests: tuple[int, ...]


@dataclass(frozen=True)
class Drain:
    """Tell ``worker`` that no more work will come."""

    worker: str


@dataclass(frozen=True)
class Reclaim:
    """Ask ``worker`` to give back ``tests`` it holds and has not started (it keeps the
    one it runs next); what it gives back comes as ``tests_released``."""

    worker: str
    tests: tuple[int, ...]


Decision = Assign | Drain | Reclaim


class Scheduler(Protocol):
    """Events in, decisions out.  Test ids are canonical indices ``0..test_count-1``.

    A worker runs its tests in the order assigned, but not necessarily as soon as they
    arrive: it keeps the last one in hand until it knows the next one or is drained, and
    it may spend a while importing an assigned test's file.  So a test's clock starts at
    ``test_started``, never at its assignment, and a worker that says ``worker_idle`` runs
    nothing.  Every ``work_requested`` is answered with an ``Assign`` or a ``Drain`` for
    that worker: at once, or (for a worker whose running test straggles) when that test
    finishes or the worker says it is idle, or (when work is taken back for it with a
    ``Reclaim``) when the holder's answer comes or the holder is lost; a worker that
    asked is never left waiting.
    """

    def worker_joined(self, worker: str, now: float = 0.0) -> list[Decision]: ...

    def work_requested(self, worker: str, now: float = 0.0) -> list[Decision]: ...

    def test_started(self, worker: str, test: int, now: float = 0.0) -> list[Decision]:
        """``worker`` runs ``test`` (the first it holds) since ``now``, or starts it at once.

        Said again for a test already running, it changes nothing.  Only after this event
        may a scheduler judge the test slow.
        """
        ...

    def worker_idle(self, worker: str, now: float = 0.0) -> list[Decision]:
        """``worker`` runs nothing until it hears from the controller (it holds no test, or
        one it cannot start before it knows the next one or is drained)."""
        ...

    def test_finished(self, worker: str, test: int, now: float = 0.0) -> list[Decision]:
        """``test`` is over; what ``worker`` does next is unknown until it says (a
        ``test_started`` or ``worker_idle`` follows in the same message)."""
        ...

    def tick(self, now: float) -> list[Decision]:
        """Time passed (the controller's clock); a scheduler may react to slow tests,
        timing each from its ``test_started``."""
        ...

    def retry(self, test: int, failed_on: str) -> list[Decision]:
        """``test`` failed on ``failed_on`` and runs again (``--retries``).

        It goes to another worker that still takes work when there is one, else back to
        ``failed_on``; when no live worker takes work it waits among the unassigned
        tests (the controller then starts a worker for it).
        """
        ...

    def worker_lost(self, worker: str, crashed: int | None) -> list[Decision]:
        """``worker`` is gone; ``crashed`` was running (and is reported by the caller)."""
        ...

    def tests_released(self, worker: str, tests: Sequence[int]) -> list[Decision]:
        """``worker`` gave back ``tests`` (after a ``Reclaim``; perhaps none of those
        asked for: it had started them): they are the scheduler's again."""
        ...

    def stop(self) -> None:
        """Assign nothing more (``-x``, interrupt)."""
        ...

    def pending(self, worker: str) -> tuple[int, ...]:
        """Tests assigned to ``worker`` and not finished, in the order it runs them."""
        ...

    @property
    def unassigned(self) -> tuple[int, ...]:
        """Tests no live worker holds."""
        ...

    #: The plan's predicted makespan in seconds (None: no plan).
    predicted_makespan: float | None
    #: Each slot's planned tests, in order (empty: no plan).
    plan: tuple[tuple[int, ...], ...]

    @property
    def done(self) -> bool:
        """Every test is finished, or lost with nobody left to run it."""
        ...


def retry_target(
    pending: Mapping[str, Sequence[int]], busy: Collection[str], failed_on: str
) -> str | None:
    """Who runs a retried test: the live worker, other than ``failed_on``, with the least
    queued work, else ``failed_on``; never one in ``busy`` (drained or straggling)."""
    takers = [w for w in pending if w not in busy]
    others = [w for w in takers if w != failed_on]
    if others:
        return min(others, key=lambda w: (len(pending[w]), w))
    return failed_on if failed_on in takers else None
