"""Tests that write files: every worker has its own temporary directory tree."""

from __future__ import annotations

import csv
import json
import time

import pytest

SALES = [("north", 120), ("south", 80), ("east", 95), ("west", 105)]


def render(fmt, rows, path):
    time.sleep(0.3)  # stands for a slow report renderer
    if fmt == "csv":
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows(rows)
    elif fmt == "json":
        path.write_text(json.dumps(dict(rows)))
    else:
        path.write_text("\n".join(f"{region:<8}{amount:>6}" for region, amount in rows) + "\n")


@pytest.mark.parametrize("fmt", ["csv", "json", "txt"])
def test_report_is_written(tmp_path, fmt):
    target = tmp_path / f"sales.{fmt}"
    render(fmt, SALES, target)
    assert target.stat().st_size > 0


def test_csv_round_trip(tmp_path):
    target = tmp_path / "sales.csv"
    render("csv", SALES, target)
    with target.open(newline="") as fh:
        rows = [(region, int(amount)) for region, amount in csv.reader(fh)]
    assert rows == SALES


def test_json_totals(tmp_path):
    target = tmp_path / "sales.json"
    render("json", SALES, target)
    assert sum(json.loads(target.read_text()).values()) == 400


def test_text_report_is_aligned(tmp_path):
    target = tmp_path / "sales.txt"
    render("txt", SALES, target)
    widths = {len(line) for line in target.read_text().splitlines()}
    assert widths == {14}
