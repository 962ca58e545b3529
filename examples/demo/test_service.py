"""Sleep-bound tests: most of their time is spent waiting, so they gain most from workers."""

from __future__ import annotations

import pytest

ENDPOINTS = [
    ("/health", 0.2),
    ("/users", 0.3),
    ("/users/42", 0.2),
    ("/orders", 0.4),
    ("/orders/7/items", 0.5),
    ("/invoices", 0.3),
    ("/search?q=pytest", 0.4),
    ("/metrics", 0.2),
]


@pytest.mark.parametrize(("path", "cost"), ENDPOINTS, ids=[p for p, _ in ENDPOINTS])
def test_endpoint_answers(service, path, cost):
    response = service.get(path, cost=cost)
    assert response == {"path": path, "status": "ok"}
    assert service.calls == [path]


def test_calls_are_recorded_in_order(service):
    for path in ("/a", "/b", "/c"):
        service.get(path)
    assert service.calls == ["/a", "/b", "/c"]


@pytest.mark.skip(reason="the sandbox of the payment provider is not available in the demo")
def test_payment_provider(service):
    service.get("/payments")
