"""The run's phase and how it ends: one object instead of scattered flags.

```
STARTING --canonical collection adopted--> RUNNING --stop(reason)--> STOPPING
    |                                         |                          |
    +--stop(reason): collection errors, a mismatch, a usage error -------+
                                              |                          |
                                              +--every worker ended--> FINISHED <-+
```

``stop`` is the one way a run stops early (``-x``/``--maxfail``, an internal error, a
worker's ``pytest.exit``, Ctrl-C, a fatal error); ``end`` raises what a serial session
would raise for that, so the exit code and the summary are pytest's own.
"""

from __future__ import annotations

import enum

import pytest

from ..reporting.replay import terminal_line
from ..wire import protocol


class Phase(enum.Enum):
    #: Workers start and collect; no test runs.
    STARTING = "starting"
    #: The canonical collection is adopted and the scheduler hands out work.
    RUNNING = "running"
    #: The run stops early: no new work, workers are told to stop.
    STOPPING = "stopping"
    #: Every worker has ended; the pool is shut down.
    FINISHED = "finished"


class RunStatus:
    def __init__(self) -> None:
        self.phase = Phase.STARTING
        #: Why the run stops early (None: it was not stopped).
        self.stop_reason: str | None = None
        #: An error that ends the run as interrupted (or a usage error, exit code 4).
        self.fatal: BaseException | None = None
        #: The first ``pytest.exit`` of a worker: the run ends with it, as serially.
        self.exit_request: protocol.Exited | None = None
        #: The collection had errors (and ``--continue-on-collection-errors`` is off).
        self.collection_failed = False
        #: Internal errors of workers ``(worker id, text)``, in the order they came: the
        #: run ends as a serial INTERNALERROR ends it (exit code 3).
        self.internal_errors: list[tuple[str, str]] = []
        #: Something other than a test's outcome went wrong (for the outcome record).
        self.execution_failed = False
        #: ``--run-timeout`` ended the run (exit code 2, as an interrupted run).
        self.deadline = False

    @property
    def stopped(self) -> bool:
        """The run was stopped early (whatever its phase now)."""
        return self.phase is Phase.STOPPING or self.stop_reason is not None

    @property
    def takes_work(self) -> bool:
        """Work is handed out only while the run runs."""
        return self.phase is Phase.RUNNING

    def adopted(self) -> None:
        """The canonical collection is known: tests may run."""
        if self.phase is Phase.STARTING:
            self.phase = Phase.RUNNING

    def stop(self, reason: str) -> bool:
        """Stop early; True the first time (the caller then tells the workers)."""
        if self.stop_reason is not None:
            return False
        self.stop_reason = reason
        if self.phase is not Phase.FINISHED:
            self.phase = Phase.STOPPING
        return True

    def fail(self, error: BaseException) -> bool:
        """A fatal error: the run stops and ends with it (the first one wins)."""
        self.execution_failed = True
        if self.fatal is None:
            self.fatal = error
        return self.stop("error")

    def deadline_passed(self, limit: float) -> bool:
        """``--run-timeout``: the run stops; it ends as interrupted."""
        self.deadline = True
        self.execution_failed = True
        return self.stop(f"the run reached --run-timeout {limit:.1f} s")

    def exit_requested(self, message: protocol.Exited) -> bool:
        if self.exit_request is None:
            self.exit_request = message
        return self.stop(message.reason)

    def finished(self) -> None:
        self.phase = Phase.FINISHED

    def end(self, config: pytest.Config, session: pytest.Session) -> None:
        """Raise what a serial session raises for how this run ended (nothing when it
        ran to its end)."""
        assert self.phase is Phase.FINISHED, self.phase
        if isinstance(self.fatal, pytest.UsageError):
            raise self.fatal
        if self.fatal is not None:
            message = str(self.fatal)
            for line in message.splitlines():
                terminal_line(config, line, red=True)
            raise session.Interrupted(message.splitlines()[0])
        if self.exit_request is not None:
            pytest.exit(self.exit_request.reason, self.exit_request.returncode)
        if self.deadline:
            raise session.Interrupted(self.stop_reason or "--run-timeout")
        if self.collection_failed:
            count = session.testsfailed
            raise session.Interrupted(f"{count} error{'s' if count != 1 else ''} during collection")
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
