"""One error hierarchy for everything parallel_exec raises on purpose.

``ParallelExecError`` is never shown as a traceback: the plugin turns usage errors into
pytest usage errors (exit code 4) and run errors into an interrupted session with a
one-line reason (exit code 2).
"""

from __future__ import annotations

import pytest


class ParallelExecError(Exception):
    """Base of every error parallel_exec raises deliberately."""


class OptionError(ParallelExecError):
    """An option value (command line or ini) is invalid; the message names the option."""


class CollectionMismatchError(ParallelExecError):
    """Workers collected different tests, so work cannot be shared between them."""


class WorkerStartError(ParallelExecError):
    """A worker process could not be started or did not complete its handshake."""


class HistoryError(ParallelExecError):
    """The timing history store is unusable; callers degrade to an empty history."""


class HistoryUnavailable(HistoryError):
    """The store is valid but not usable now (locked by another run, or written by a
    newer parallel_exec): it is skipped for this run and left exactly as it is."""


class VersionMismatchError(WorkerStartError):
    """A worker runs another protocol, package or Python version than the controller."""


class WorkerInternalError(ParallelExecError):
    """An INTERNALERROR in a worker; its text is the worker's traceback."""


class ParallelExecWarning(pytest.PytestWarning):
    """A problem parallel_exec worked around (for example an unusable timing history)."""
