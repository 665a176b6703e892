"""Smoke test of the benchmarks: `bench/run --quick --only cli` completes and writes valid JSON.

Ratios are reported, never asserted: this only checks that the harness runs and that
results.json holds objects with exactly the documented fields.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

FIELDS = {"name", "ours", "baseline", "ratio", "goal", "pass", "runs", "spread"}


def test_bench_cli_quick_writes_results(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run"), "--quick", "--only", "cli",
         "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads(output.read_text())
    assert isinstance(rows, list) and rows
    names = [row["name"] for row in rows]
    assert any(name.startswith("cli.validate") for name in names)
    assert any(name.startswith("cli.status") for name in names)
    for row in rows:
        assert set(row) == FIELDS
        assert isinstance(row["name"], str)
        assert row["pass"] in (True, False, None)
        assert isinstance(row["runs"], int)
        for key in ("ours", "baseline", "ratio", "spread"):
            assert row[key] is None or isinstance(row[key], int | float)
    assert "| name " in done.stdout  # the table was printed
