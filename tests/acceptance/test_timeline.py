"""``--report-timeline`` on a real run (a plan from the history, a retry, a crash), the
same picture from ``parallel-exec timeline REPORT.json``, and the file opened in
headless Chromium: a screenshot that is not blank, and the lanes and figures rendered
in the DOM.  Chromium comes from the system (``.ci/run`` installs Debian's package);
where there is none, the Chromium test is skipped and says why."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PluginRunner

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

SUITE = textwrap.dedent(
    """
    import os, time, pytest

    @pytest.mark.parametrize("n", range(8))
    def test_steady(n):
        time.sleep(0.05 * (n % 3))

    def test_flaky(request):
        marker = request.config.rootpath / "flaky-once"
        if not marker.exists():
            marker.write_text("x")
            assert 0, "the first attempt fails"

    def test_crashes():
        if os.environ.get("CRASH"):
            time.sleep(0.3)
            os._exit(7)
    """
)


def run_with_timeline(runner: PluginRunner) -> tuple[Path, Path, pytest.RunResult]:
    runner.pytester.makepyfile(test_tl=SUITE)
    runner.run("-p", "no:randomly", workers=2)  # the history: a plan next time
    (runner.pytester.path / "flaky-once").unlink()
    page, report = runner.pytester.path / "timeline.html", runner.pytester.path / "report.json"
    runner.pytester._monkeypatch.setenv("CRASH", "1")
    result = runner.run(
        "-p",
        "no:randomly",
        "-p",
        "no:rerunfailures",
        "--retries",
        "1",
        f"--report-timeline={page}",
        f"--report-json={report}",
        workers=2,
    )
    return page, report, result


def test_the_timeline_of_a_run_and_the_same_from_its_json_report(runner: PluginRunner) -> None:
    page, report, result = run_with_timeline(runner)
    assert result.ret == 1, runner.output(result)
    text = page.read_text(encoding="utf-8")
    data = json.loads(
        re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S).group(1)  # type: ignore[union-attr]
    )
    tests = json.loads(report.read_text())["tests"]
    finals = [b for b in data["bars"] if not b[6] & 1]
    assert sorted(data["ids"][b[5]] for b in finals) == sorted(t["nodeid"] for t in tests)
    assert any(b[6] & 1 for b in data["bars"]), "the flaky test's first attempt"
    assert any(b[6] & 2 for b in finals), "the crash"
    assert data["plan"], "a plan from the history"
    assert {f[0] for f in data["figures"]} >= {"wall", "speedup", "efficiency", "balance", "reward"}
    drawn = runner.pytester.path / "drawn.html"
    command = [
        sys.executable,
        "-m",
        "parallel_exec.history.cli",
        "timeline",
        str(report),
        "-o",
        str(drawn),
    ]
    subprocess.run(command, check=True, capture_output=True)
    assert drawn.read_text(encoding="utf-8") == text


def png_colours(path: Path) -> int:
    """How many distinct byte values the PNG's pixel data holds (a blank page: 2 or 3)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat = 8, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            idat += data[position + 8 : position + 8 + length]
        position += 12 + length
    return len(set(zlib.decompress(idat)))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (CI installs Debian's package)")
def test_chromium_draws_the_lanes_and_the_figures(runner: PluginRunner) -> None:
    page, _, _ = run_with_timeline(runner)
    assert CHROMIUM is not None
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,600"]
    shot = runner.pytester.path / "shot.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120
    )
    assert shot.exists(), "no screenshot"
    assert png_colours(shot) > 16, "a blank screenshot"
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    body = re.search(r"<body ([^>]*)>", dom)
    assert body is not None, dom[:2000]
    attributes = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body.group(1)))
    workers = re.findall(r"<li>(gw\d+)</li>", dom)
    assert len(workers) >= 2, dom[:2000]
    assert int(attributes["data-rows"]) == len(workers)  # a lane per worker, drawn
    assert int(attributes["data-bars"]) >= 10
    assert int(attributes["data-drawn-ms"]) < 2000
    for figure in ("speedup", "efficiency", "lower bound", "reward"):
        assert f"<span>{figure}</span>" in dom


def test_an_in_process_run_draws_one_lane(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(test_small="def test_a(): pass\ndef test_b(): assert 0\n")
    page = runner.pytester.path / "serial.html"
    result = runner.run(f"--report-timeline={page}")  # no -n: the tests run in this process
    assert result.ret == 1, runner.output(result)
    found = re.search(
        r'<script id="data" type="application/json">(.*?)</script>', page.read_text(), re.S
    )
    assert found is not None
    data = json.loads(found.group(1))
    assert data["lanes"] == ["master"]
    assert sorted((data["ids"][b[5]], b[3]) for b in data["bars"]) == [
        ("test_small.py::test_a", "p"),
        ("test_small.py::test_b", "f"),
    ]
