"""Shared fixtures of the demo suite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


@dataclass
class FakeService:
    """Stands for a slow remote service: every call costs a fixed amount of wall time."""

    latency: float
    calls: list[str] = field(default_factory=list)

    def get(self, path: str, cost: float | None = None) -> dict[str, str]:
        time.sleep(self.latency if cost is None else cost)
        self.calls.append(path)
        return {"path": path, "status": "ok"}


@pytest.fixture
def service() -> Iterator[FakeService]:
    svc = FakeService(latency=0.1)
    yield svc
    svc.calls.clear()
