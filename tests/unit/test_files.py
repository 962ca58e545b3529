"""``write_atomically``: report files get the mode ``open()`` would give them.

``mkstemp`` creates its temporary file ``0600``; renamed into place as it was, a report
could not be read by a CI step running as another user, where pytest's own
``--junitxml`` (written with ``open``) can.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from parallel_exec import files
from parallel_exec.files import current_umask, write_atomically

pytestmark = pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes")


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process umask a test sets."""
    saved = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(saved)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("proc_status", [True, False], ids=["proc", "umask-swap"])
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_report_mode_follows_the_umask(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mask: int,
    expected: int,
    proc_status: bool,
) -> None:
    if not proc_status:
        monkeypatch.setattr(files, "_PROC_STATUS", str(tmp_path / "no-such-status"))
    os.umask(mask)
    assert current_umask() == mask
    target = tmp_path / "reports" / "junit.xml"
    write_atomically(target, "<testsuites/>\n")
    assert target.read_text(encoding="utf-8") == "<testsuites/>\n"
    assert mode_of(target) == expected
    # What open() gives a new file under the same umask.
    plain = tmp_path / "plain.xml"
    with open(plain, "w", encoding="utf-8") as fh:
        fh.write("x")
    assert mode_of(plain) == expected
    assert os.umask(mask) == mask, "the umask was changed"


@pytest.mark.usefixtures("umask")
def test_replacing_a_report_leaves_no_temporary_file(tmp_path: Path) -> None:
    os.umask(0o022)
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o600)
    write_atomically(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    assert mode_of(target) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
