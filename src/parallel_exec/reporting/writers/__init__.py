"""Report writers: independent consumers of the run-event stream.

Each writer is a callable taking ``events.RunEvent``; none re-assembles pytest's
setup/call/teardown sequence (``events.TestFinished`` carries a test's reports grouped,
with its earlier attempts).  Files are written when ``events.SessionEnded`` arrives,
atomically (a temporary file beside the target, then a rename); the TAP writer may also
stream to standard output as tests finish.
"""

from __future__ import annotations

from collections.abc import Callable
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
    if settings.report_json:
        from .json_report import JsonWriter

        writers.append(JsonWriter(resolve(config, settings.report_json)))
    if settings.report_timeline:
        from ..timeline import TimelineWriter
        from .json_report import JsonWriter

        collector = JsonWriter(resolve(config, settings.report_timeline))

        def document(event: events.RunEvent) -> dict[str, object] | None:
            report = collector.collect(event)
            return None if report is None else report.model_dump(mode="json", by_alias=True)

        writers.append(TimelineWriter(resolve(config, settings.report_timeline), document))
    if settings.report_tap:
        from .tap import TapWriter

        tap = settings.report_tap
        writers.append(TapWriter(None if tap == "-" else resolve(config, tap)))
    return writers
