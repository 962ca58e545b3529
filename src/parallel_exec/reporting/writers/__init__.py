"""Report writers: independent consumers of the run-event stream.

Each writer is a callable taking ``events.RunEvent``; none re-assembles pytest's
setup/call/teardown sequence (``events.TestFinished`` carries a test's reports grouped,
with its earlier attempts).  Files are written when ``events.SessionEnded`` arrives,
atomically (a temporary file beside the target, then a rename); the TAP writer may also
stream to standard output as tests finish.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from ...settings import Settings
from .. import events


def resolve(config: pytest.Config, value: str) -> Path:
    """A report path as given, relative to where pytest was invoked."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else config.invocation_params.dir / path


def make_writers(
    config: pytest.Config, settings: Settings
) -> list[Callable[[events.RunEvent], None]]:
    """The writers the options ask for, ready to subscribe to a run's event stream."""
    writers: list[Callable[[events.RunEvent], None]] = []
    if settings.report_junit:
        from .junit import JunitWriter

        suite_name = str(config.getini("junit_suite_name") or "pytest")
        writers.append(
            JunitWriter(
                resolve(config, settings.report_junit),
                extended=settings.report_junit_extended,
                suite_name=suite_name,
            )
        )
    if settings.report_json or settings.report_timeline:
        # The timeline is drawn from the JSON report's record of the run: one record,
        # so that the two files say the same.
        from .json_report import JsonWriter

        then = []
        if settings.report_timeline:
            from ..timeline import write_timeline

            timeline = resolve(config, settings.report_timeline)
            then.append((f"timeline ({timeline})", partial(write_timeline, timeline)))
        json_path = resolve(config, settings.report_json) if settings.report_json else None
        writers.append(JsonWriter(json_path, then=then))
    if settings.report_tap:
        from .tap import TapWriter

        tap = settings.report_tap
        writers.append(TapWriter(None if tap == "-" else resolve(config, tap)))
    return writers
