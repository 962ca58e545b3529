"""The package as a user installs it: ``python -m build`` makes a wheel that installs and
runs the demo suite in parallel (the README's install-from-a-checkout path)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import child_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_builds_installs_and_runs_the_demo(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    for member in ("parallel_exec/py.typed", "parallel_exec/schemas/report.schema.json"):
        assert member in names, sorted(names)

    # A fresh environment; its dependencies (pytest, execnet...) are this one's, but not
    # this one's editable install of parallel_exec (its .pth files are not read).
    python, site = child_env.create(tmp_path / "venv", parent_pth_files=False)
    child_env.pip_install(python, "--no-deps", str(wheels[0]), timeout=300)
    where = subprocess.run(
        [str(python), "-c", "import parallel_exec; print(parallel_exec.__file__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(site), where

    demo = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "demo", demo)
    run = subprocess.run(
        [str(python), "-m", "pytest", "-p", "parallel_exec", "-n", "2", "-q", str(demo)],
        cwd=demo,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            k: v
            for k, v in __import__("os").environ.items()
            if not k.startswith(("PYTEST_", "PARALLEL_EXEC_"))
        },
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "passed" in run.stdout.splitlines()[-1], run.stdout
