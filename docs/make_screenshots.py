"""Make the README's pictures from real runs of the demo suite (examples/demo).

- ``docs/live-status.png``: the live status of ``pytest -p parallel_exec -n 4``, run on
  a pseudo-terminal, read back through a terminal emulator (pyte) while the run goes,
  drawn as HTML and photographed by headless Chromium.
- ``docs/timeline.png``: the ``--report-timeline`` file of the next run (with history:
  the plan beside it), photographed by headless Chromium.

    python docs/make_screenshots.py      (needs pyte and chromium)
"""

from __future__ import annotations

import html
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyte

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the pseudo-terminal runner the tests use

from pty_terminal import run_on_terminal, text_of  # noqa: E402

DEMO = ROOT / "examples" / "demo"
CHROMIUM = shutil.which("chromium") or "chromium"
COLUMNS, ROWS = 100, 26


def screen_while_running(command: list[str], cwd: Path) -> list[list[pyte.screens.Char]]:
    """The terminal screen at the moment the status showed the most busy workers."""
    best: list[list[pyte.screens.Char]] = []
    best_busy = [-1]

    def look(screen: pyte.Screen, pid: int) -> None:
        lines = text_of(screen)
        busy = sum(1 for line in lines if line.lstrip().startswith("gw") and line.endswith("s"))
        done = next((line for line in lines if "ETA" in line), "")
        if busy >= best_busy[0] and done and not done.startswith("0/"):
            best_busy[0] = busy
            best[:] = [[screen.buffer[y][x] for x in range(COLUMNS)] for y in range(ROWS)]

    run_on_terminal(
        command, str(cwd), look, columns=COLUMNS, rows=ROWS, term="xterm-256color", every=0.05
    )
    return best


def screen_html(rows: list[list[pyte.screens.Char]]) -> str:
    colours = {
        "red": "#e06c75",
        "green": "#98c379",
        "yellow": "#e5c07b",
        "blue": "#61afef",
        "magenta": "#c678dd",
        "cyan": "#56b6c2",
        "white": "#dcdfe4",
        "default": "#dcdfe4",
    }
    lines = []
    for row in rows:
        spans = []
        for char in row:
            colour = colours.get(char.fg, "#dcdfe4")
            weight = "bold" if char.bold else "normal"
            spans.append(
                f"<span style='color:{colour};font-weight:{weight}'>{html.escape(char.data)}</span>"
            )
        lines.append("".join(spans))
    return (
        "<html><body style='margin:0;background:#282c34'><pre style='margin:0;padding:12px;"
        "font:14px/1.25 DejaVu Sans Mono, monospace;color:#dcdfe4'>"
        + "\n".join(lines)
        + "</pre></body></html>"
    )


def photograph(page: Path, png: Path, width: int, height: int) -> None:
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "demo"
        shutil.copytree(DEMO, work)
        base = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "parallel_exec",
            "-n",
            "4",
            "-p",
            "no:randomly",
        ]
        subprocess.run([*base, "-q"], cwd=work, capture_output=True)  # the history
        rows = screen_while_running(base, work)
        page = Path(tmp) / "live.html"
        page.write_text(screen_html(rows), encoding="utf-8")
        photograph(page, ROOT / "docs" / "live-status.png", 9 * COLUMNS + 40, 18 * ROWS + 30)
        timeline = Path(tmp) / "timeline.html"
        subprocess.run(
            [*base, "-q", f"--report-timeline={timeline}"], cwd=work, capture_output=True
        )
        photograph(timeline.with_name("timeline.html"), ROOT / "docs" / "timeline.png", 1200, 420)
        plan = Path(tmp) / "plan.html"
        plan.write_text(
            timeline.read_text(encoding="utf-8").replace(
                'id="toggle-plan">', 'id="toggle-plan" checked>'
            ),
            encoding="utf-8",
        )
        photograph(plan, ROOT / "docs" / "timeline-plan.png", 1200, 560)
    print("wrote docs/live-status.png, docs/timeline.png, docs/timeline-plan.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
