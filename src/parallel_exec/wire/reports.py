"""Reports across the process boundary, with pytest's own (de)serialization hooks.

pytest's ``pytest_report_to_serializable`` keeps a failure's traceback structure, but
turns any other terminal representation (a doctest failure, a collection error) into
a plain string, and pytest formats a string longrepr differently (the short summary
appends it after " - ").  The worker notes that the string stood for a representation,
and the controller gives it one back, so summaries read as in a serial run.
"""

from __future__ import annotations

from typing import Any

import pytest

from .._pytest_compat import CollectErrorRepr, TerminalRepr, TerminalWriter

WAS_REPR = "parallel_exec_longrepr_was_repr"


class TextRepr(TerminalRepr):
    """A terminal representation rebuilt from its text (it has no crash location)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def toterminal(self, tw: TerminalWriter) -> None:
        for line in self.text.splitlines():
            tw.line(line)


def serialize(
    config: pytest.Config, report: pytest.TestReport | pytest.CollectReport
) -> dict[str, Any]:
    data: dict[str, Any] = config.hook.pytest_report_to_serializable(config=config, report=report)
    longrepr = report.longrepr
    if hasattr(longrepr, "toterminal") and not (
        hasattr(longrepr, "reprtraceback") and hasattr(longrepr, "reprcrash")
    ):
        data[WAS_REPR] = True
    return data


def deserialize(config: pytest.Config, data: dict[str, Any]) -> Any:
    was_repr = data.pop(WAS_REPR, False)
    report = config.hook.pytest_report_from_serializable(config=config, data=data)
    if was_repr and isinstance(report.longrepr, str):
        if isinstance(report, pytest.CollectReport):
            report.longrepr = CollectErrorRepr(report.longrepr)
        else:
            report.longrepr = TextRepr(report.longrepr)
    return report
