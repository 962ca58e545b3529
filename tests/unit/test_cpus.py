"""CPU counting against cgroup files written into ``tmp_path``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parallel_exec.cpus import affinity_cpus, cgroup_quota_cpus, logical_cpus, usable_cpus


def write_v2(root: Path, text: str) -> Path:
    (root / "cpu.max").write_text(text)
    return root


def write_v1(root: Path, quota: str, period: str) -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota)
    (root / "cpu" / "cpu.cfs_period_us").write_text(period)
    return root


def affinity() -> int:
    return len(os.sched_getaffinity(0))


# ---------------------------------------------------------------------------- cgroup v2


@pytest.mark.parametrize(
    ("text", "quota"),
    [
        ("max 100000\n", None),
        ("max\n", None),
        ("150000 100000\n", 1.5),
        ("50000 100000\n", 0.5),
        ("200000 100000", 2.0),
        ("400000 200000\n", 2.0),
        ("150000\n", 1.5),  # no period: the kernel default of 100000 us
    ],
)
def test_v2_cpu_max(tmp_path: Path, text: str, quota: float | None) -> None:
    assert cgroup_quota_cpus(write_v2(tmp_path, text)) == quota


@pytest.mark.parametrize("text", ["", "lots of cpus", "1.5 100000", "150000 abc", "\n"])
def test_v2_garbage_is_no_quota(tmp_path: Path, text: str) -> None:
    assert cgroup_quota_cpus(write_v2(tmp_path, text)) is None


def test_v2_zero_period_is_no_quota(tmp_path: Path) -> None:
    # A corrupt file must not take down ``-n auto`` with ZeroDivisionError.
    assert cgroup_quota_cpus(write_v2(tmp_path, "150000 0\n")) is None


def test_v2_wins_over_v1(tmp_path: Path) -> None:
    write_v1(tmp_path, "400000", "100000")
    write_v2(tmp_path, "50000 100000\n")
    assert cgroup_quota_cpus(tmp_path) == 0.5


def test_v2_unreadable_entry_is_no_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").mkdir()  # not a file: ignored, no v1 files either
    assert cgroup_quota_cpus(tmp_path) is None


# ---------------------------------------------------------------------------- cgroup v1


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [
        ("-1\n", "100000\n", None),
        ("0\n", "100000\n", None),
        ("200000\n", "100000\n", 2.0),
        ("50000", "100000", 0.5),
        ("150000\n", "50000\n", 3.0),
    ],
)
def test_v1_cfs_files(tmp_path: Path, quota: str, period: str, expected: float | None) -> None:
    assert cgroup_quota_cpus(write_v1(tmp_path, quota, period)) == expected


@pytest.mark.parametrize(
    ("quota", "period"), [("lots", "100000"), ("200000", "often"), ("", ""), ("2e5", "1e5")]
)
def test_v1_garbage_is_no_quota(tmp_path: Path, quota: str, period: str) -> None:
    assert cgroup_quota_cpus(write_v1(tmp_path, quota, period)) is None


def test_v1_zero_period_is_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota_cpus(write_v1(tmp_path, "200000\n", "0\n")) is None


def test_v1_needs_both_files(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    assert cgroup_quota_cpus(tmp_path) is None


# ---------------------------------------------------------------------------- missing


def test_missing_files_are_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota_cpus(tmp_path) is None


def test_missing_root_is_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota_cpus(tmp_path / "does-not-exist") is None


# ---------------------------------------------------------------------------- usable_cpus


def test_affinity_cpus_is_the_affinity_mask() -> None:
    assert affinity_cpus() == affinity()


def test_usable_without_quota_is_the_affinity_mask(tmp_path: Path) -> None:
    assert usable_cpus(tmp_path) == affinity()
    assert usable_cpus(write_v2(tmp_path, "max 100000\n")) == affinity()


@pytest.mark.parametrize(
    ("text", "quota_cpus"),
    [
        ("50000 100000\n", 1),  # half a CPU still gets one worker
        ("1000 100000\n", 1),
        ("100000 100000\n", 1),
        ("150000 100000\n", 2),  # rounded up
        ("200000 100000\n", 2),
        ("250000 100000\n", 3),
    ],
)
def test_usable_honours_the_quota(tmp_path: Path, text: str, quota_cpus: int) -> None:
    usable = usable_cpus(write_v2(tmp_path, text))
    assert usable == min(affinity(), quota_cpus)
    assert usable >= 1


def test_usable_rounds_a_fractional_quota_up(tmp_path: Path) -> None:
    if affinity() < 2:
        pytest.skip("needs an affinity mask of at least 2 CPUs")
    assert usable_cpus(write_v2(tmp_path, "150000 100000\n")) == 2


def test_usable_never_exceeds_the_affinity_mask(tmp_path: Path) -> None:
    huge = f"{(affinity() + 64) * 100000} 100000\n"
    assert usable_cpus(write_v2(tmp_path, huge)) == affinity()


def test_usable_with_v1_quota(tmp_path: Path) -> None:
    assert usable_cpus(write_v1(tmp_path, "100000", "100000")) == 1
    # v1 quota of 0.3 CPUs
    other = tmp_path / "other"
    other.mkdir()
    assert usable_cpus(write_v1(other, "30000", "100000")) == 1


def test_usable_ignores_garbage(tmp_path: Path) -> None:
    assert usable_cpus(write_v2(tmp_path, "garbage\n")) == affinity()


def test_usable_with_zero_period_does_not_raise(tmp_path: Path) -> None:
    assert usable_cpus(write_v2(tmp_path, "150000 0\n")) == affinity()


def test_usable_on_this_machine_is_within_affinity_and_machine() -> None:
    assert 1 <= usable_cpus() <= affinity() <= logical_cpus()
