"""Decisions and the interface every scheduler implements."""

from __future__ import annotations

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


Decision = Assign | Drain


class Scheduler(Protocol):
    """Events in, decisions out.  Test ids are canonical indices ``0..test_count-1``."""

    def worker_joined(self, worker: str, now: float = 0.0) -> list[Decision]: ...

    def work_requested(self, worker: str, now: float = 0.0) -> list[Decision]: ...

    def test_finished(self, worker: str, test: int, now: float = 0.0) -> list[Decision]: ...

    def tick(self, now: float) -> list[Decision]:
        """Time passed (the controller's clock); a scheduler may react to slow tests."""
        ...

    def worker_lost(self, worker: str, crashed: int | None) -> list[Decision]:
        """``worker`` is gone; ``crashed`` was running (and is reported by the caller)."""
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

    @property
    def done(self) -> bool:
        """Every test is finished, or lost with nobody left to run it."""
        ...
