"""The collection gate: no test starts before every first-wave worker agrees.

The first-wave workers each collect their share of the files (``imports``, ``split``)
or everything (``full``); the gate waits for all of them, merges (or compares) their
collections into the canonical one, and from then on checks that every later collection
agrees with it.  Plain data in, a verdict out: it never talks to a worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wire import protocol
from .canonical import CanonicalCollection, check_agrees, merge


@dataclass(frozen=True)
class Waiting:
    """Not every first-wave collection is in yet: the worker waits."""


@dataclass(frozen=True)
class Adopted:
    """The canonical collection is known now; ``joining`` are the workers waiting for it
    (in arrival order), the last one included."""

    canonical: CanonicalCollection
    joining: tuple[str, ...]


@dataclass(frozen=True)
class Agreed:
    """A later worker's collection agrees with the canonical one: it may join."""

    worker_id: str


Verdict = Waiting | Adopted | Agreed


class CollectionGate:
    def __init__(self, first_wave: int, split: bool) -> None:
        self.first_wave = first_wave
        self.split = split
        self.canonical: CanonicalCollection | None = None
        #: First-wave collections by share index (split) or arrival (full).
        self._shares: dict[int, protocol.Collected] = {}
        self._waiting: list[str] = []

    def collected(self, message: protocol.Collected) -> Verdict:
        """A worker's collection.  Raises ``CollectionMismatchError`` when it disagrees."""
        worker_id = message.worker_id
        if self.canonical is not None:
            check_agrees(self.canonical, self.first_worker(), message)
            return Agreed(worker_id)
        if self.split and message.share is None:
            self._waiting.append(worker_id)  # started early with no share: joins later
            return Waiting()
        key = message.share[0] if self.split and message.share else len(self._shares)
        self._shares.setdefault(key, message)
        self._waiting.append(worker_id)
        if len(self._shares) < self.first_wave:
            return Waiting()
        initial = [self._shares[k] for k in sorted(self._shares)]
        if self.split:
            canonical = merge(initial, split=True)
        else:
            canonical = merge(initial[:1], split=False)
            for other in initial[1:]:
                check_agrees(canonical, initial[0].worker_id, other)
        self.canonical = canonical
        joining, self._waiting = tuple(self._waiting), []
        return Adopted(canonical, joining)

    def has_collected(self, worker_id: str) -> bool:
        """Whether this worker's collection is one of the first wave's."""
        return any(c.worker_id == worker_id for c in self._shares.values())

    def forget(self, worker_id: str) -> None:
        """The worker ended: it no longer waits to join."""
        if worker_id in self._waiting:
            self._waiting.remove(worker_id)

    def first_worker(self) -> str:
        """The worker whose collection the others are compared with."""
        shares = self._shares
        return shares[min(shares)].worker_id if shares else "the first worker"
