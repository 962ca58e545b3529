"""``--test-timeout`` in an in-process run (no ``-n``, ``-n 0``): best effort.

On workers the controller ends a test that runs too long (``controller/guards.py``).  In
the pytest process there is nobody to do that: a ``SIGALRM`` timer, armed when a test
starts (setup, call and teardown count) and disarmed when it ends, writes every thread's
stack (faulthandler, from the main thread: the test's captured stderr) and fails the test
from inside (``Timeout: exceeded N s``).  It cannot interrupt C code that does not return
to Python, nor a test that blocks ``SIGALRM``: that is what the worker mode is for.
POSIX only.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
from typing import Any

import pytest

from .controller.guards import timeout_message
from .worker.limits import effective_limit, marker_limit


class InProcessTimeout:
    """``limit``: ``--test-timeout`` (None: only tests' own limits); ``timeout_marker``:
    ``@pytest.mark.timeout`` is ours to enforce (pytest-timeout is not installed)."""

    def __init__(self, limit: float | None, timeout_marker: bool) -> None:
        self.limit = limit
        self.timeout_marker = timeout_marker
        self._previous: Any = None
        self._armed: float | None = None

    @staticmethod
    def available() -> bool:
        return hasattr(signal, "SIGALRM") and hasattr(signal, "setitimer")

    def _expired(self, signum: int, frame: Any) -> None:
        __tracebackhide__ = True
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        pytest.fail(timeout_message(self._armed or 0.0))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> None:
        limit = effective_limit(marker_limit(item, self.timeout_marker), self.limit)
        if limit:
            self._armed = limit
            self._previous = signal.signal(signal.SIGALRM, self._expired)
            signal.setitimer(signal.ITIMER_REAL, limit)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        if self._armed is None:
            return
        self._armed = None
        signal.setitimer(signal.ITIMER_REAL, 0)
        if self._previous is not None:
            signal.signal(signal.SIGALRM, self._previous)
            self._previous = None
