"""Helpers of the fault-injection suite.

Each fault test runs a real parallel pytest in a subprocess with a fault a real suite
produces (a hook that raises in workers, an unpicklable value, a worker killed, a
damaged history...) and checks the three things no fault may break:

* the accounting invariant: every collected test has exactly one result in the
  ``--report-json`` report (a test that could not run is there as an error that says
  why), and a run with a test missing never exits 0 (``--junitxml`` is written too; a
  test that fails and then errors in teardown has two ``<testcase>`` there, serially);
* the exit code the fault calls for;
* no process of the run is left behind (workers, the fork server).

Processes are found by a marker variable in their environment, which every worker and
the fork server inherit from the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

MARKER = "PARALLEL_EXEC_FAULT_RUN"


@dataclass
class FaultRun:
    result: pytest.RunResult
    junit: Path
    marker: str
    json_report: Path

    @property
    def output(self) -> str:
        return "\n".join(self.result.outlines + self.result.errlines)

    @property
    def exit_code(self) -> int:
        return int(self.result.ret)

    def cases(self) -> list[tuple[str, str]]:
        """``(test id, outcome)`` for every ``<testcase>``, in document order.

        The id is ``classname::name`` as pytest writes it; the outcome is ``passed``,
        ``failed``, ``error``, ``skipped`` (more than one word joined with ``+``).
        """
        if not self.junit.exists():
            return []
        root = ET.parse(self.junit).getroot()
        found = []
        for case in root.iter("testcase"):
            words = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
            outcome = "+".join(w.replace("failure", "failed") for w in words) or "passed"
            found.append((f"{case.get('classname')}::{case.get('name')}", outcome))
        return found

    def outcomes(self) -> dict[str, str]:
        return dict(self.cases())

    def results(self) -> list[tuple[str, str]]:
        """``(node id, outcome)`` of every test in the JSON report, in its order."""
        if not self.json_report.exists():
            return []
        data = json.loads(self.json_report.read_text(encoding="utf-8"))
        return [(t["nodeid"], t["outcome"]) for t in data["tests"]]

    def case_text(self, name_suffix: str) -> str:
        """Everything inside the ``<testcase>`` whose name ends with ``name_suffix``."""
        root = ET.parse(self.junit).getroot()
        for case in root.iter("testcase"):
            if str(case.get("name", "")).endswith(name_suffix):
                return "\n".join(
                    f"{c.get('message', '')}\n{c.text or ''}" for c in case.iter() if c is not case
                )
        raise AssertionError(f"no <testcase> named ...{name_suffix}")


def run_fault(
    runner: PluginRunner,
    *args: str,
    workers: int = 2,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> FaultRun:
    """One parallel run with ``--junitxml``; its processes carry a marker variable."""
    marker = uuid.uuid4().hex
    junit = runner.junit_path("fault")
    json_report = junit.with_suffix(".json")
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv(MARKER, marker)
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        result = runner.run(
            f"--junitxml={junit}",
            "--report-json",
            str(json_report),
            *args,
            workers=workers,
            timeout=timeout,
        )
    finally:
        mp.undo()
    return FaultRun(result, junit, marker, json_report)


def leftover_processes(marker: str) -> list[psutil.Process]:
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(MARKER) == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def assert_no_process_left(run: FaultRun, grace: float = 5.0) -> None:
    """Every process of the run is gone (within ``grace`` seconds of its end)."""
    deadline = time.monotonic() + grace
    while True:
        left = leftover_processes(run.marker)
        if not left:
            return
        if time.monotonic() > deadline:
            described = []
            for proc in left:
                try:
                    described.append(f"{proc.pid}: {' '.join(proc.cmdline())[:200]}")
                except psutil.Error:
                    described.append(str(proc.pid))
            for proc in left:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            raise AssertionError("processes left behind:\n" + "\n".join(described))
        time.sleep(0.1)


def assert_accounted(run: FaultRun, expected: list[str] | int) -> None:
    """Every expected test has exactly one result in the JSON report; ``expected`` is a
    list of node ids (or a count).  A run with a test not passed exits non-zero."""
    results = run.results()
    ids = [nodeid for nodeid, _ in results]
    twice = sorted(n for n, count in Counter(ids).items() if count > 1)
    assert not twice, f"reported more than once: {twice}\n{run.output}"
    if isinstance(expected, int):
        assert len(ids) == expected, f"{len(ids)} results, {expected} expected\n{run.output}"
    else:
        missing = sorted(set(expected) - set(ids))
        extra = sorted(set(ids) - set(expected))
        assert not missing, f"no result for {missing}\n{run.output}"
        assert not extra, f"unexpected results {extra}\n{run.output}"
    if any(outcome in ("failed", "error") for _, outcome in results):
        assert run.exit_code != 0, run.output


@dataclass
class LiveRun:
    """A parallel run started in the background, its terminal output going to a file."""

    process: subprocess.Popen[bytes]
    output: Path
    marker: str

    @property
    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, what: str, timeout: float = 60.0) -> None:
        """Wait until the output shows ``what``; fail if the run ends or time runs out."""
        deadline = time.monotonic() + timeout
        while what not in self.text:
            assert self.process.poll() is None, f"the run ended first:\n{self.text}"
            assert time.monotonic() < deadline, f"no {what!r} in:\n{self.text}"
            time.sleep(0.02)

    def finish(self, timeout: float = 60.0) -> int:
        """Its exit code; killed when it has not ended within ``timeout``."""
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()

    def as_fault_run(self) -> FaultRun:
        return FaultRun(None, self.output, self.marker, self.output)  # type: ignore[arg-type]


def start_run(
    runner: PluginRunner, monkeypatch: pytest.MonkeyPatch, *args: str, workers: int = 2
) -> LiveRun:
    """Start ``pytest -p parallel_exec -n workers *args`` unbuffered in the background."""
    marker = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, marker)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    output = runner.pytester.path / "controller-output.txt"
    with output.open("w") as sink:
        process = runner.pytester.popen(
            runner.command(*args, workers=workers), stdout=sink, stderr=subprocess.STDOUT
        )
    return LiveRun(process, output, marker)
