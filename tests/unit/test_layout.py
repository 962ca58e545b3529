"""The layout keeps the two processes apart: the worker side imports only the wire.

Every worker pays its imports at start-up, so the worker side must not import the
controller, the history (sqlite3), the report writers or pydantic.  Checked twice: on
the source (what each worker-side module imports) and in a fresh interpreter (what
importing the worker's entry points, and the plugin module every worker loads with
``-p parallel_exec``, brings in).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import parallel_exec

PACKAGE = Path(parallel_exec.__file__).parent
WORKER_SIDE = ("worker", "wire")
#: Modules of the package the worker side may import, besides itself.
ALLOWED = {
    "parallel_exec",
    "parallel_exec._version",
    "parallel_exec.errors",
    "parallel_exec._pytest_compat",
    # Finding and ending the processes tests start (psutil only where /proc is not).
    "parallel_exec.processes",
}
FORBIDDEN_MODULES = ("pydantic", "sqlite3", "psutil")


def imported_modules(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """Every module a source file imports, relative imports resolved (``root``: the
    directory holding the package)."""
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    package = module.rpartition(".")[0] if path.name != "__init__.py" else module
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            if node.module is None or node.level:
                found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return found


def worker_side_files() -> list[Path]:
    return sorted(p for side in WORKER_SIDE for p in (PACKAGE / side).glob("*.py"))


def test_worker_side_imports_only_the_wire() -> None:
    offending = []
    for path in worker_side_files():
        for name in imported_modules(path):
            if name.split(".")[0] in FORBIDDEN_MODULES:
                offending.append((path.name, name))
            if not name.startswith("parallel_exec"):
                continue
            inside = any(name.startswith(f"parallel_exec.{side}") for side in WORKER_SIDE)
            allowed = name in ALLOWED or any(
                name.startswith(f"{module}.") for module in ALLOWED - {"parallel_exec"}
            )
            if not inside and not allowed:
                offending.append((f"{path.parent.name}/{path.name}", name))
    assert offending == []


def test_the_rule_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The check itself can fail: a relative import of the controller is found."""
    source = (PACKAGE / "worker" / "main.py").read_text(encoding="utf-8")
    copy = tmp_path / "parallel_exec" / "worker" / "main.py"
    copy.parent.mkdir(parents=True)
    copy.write_text(source + "\nfrom ..controller import pool\n", encoding="utf-8")
    assert "parallel_exec.controller.pool" in imported_modules(copy, tmp_path)
    assert "parallel_exec.controller.pool" not in imported_modules(PACKAGE / "worker" / "main.py")


def test_a_worker_process_loads_nothing_of_the_controller() -> None:
    """What a worker's interpreter has loaded once it imported its entry points and
    the plugin module (``-p parallel_exec`` loads it in every worker)."""
    code = (
        "import json, sys\n"
        "import parallel_exec, parallel_exec.plugin\n"
        "import parallel_exec.worker.main, parallel_exec.worker.forkserver\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))
    ours = {m for m in loaded if m.startswith("parallel_exec.")}
    unwanted = {
        m for m in ours if m.split(".")[1] in ("controller", "history", "reporting", "scheduling")
    }
    assert unwanted == set()
    assert {m for m in loaded if m.split(".")[0] in ("pydantic", "sqlite3")} == set()
