"""The opt-in live contract tests against a real Oracle database (marker `oracle_live`).

They are deselected — not skipped — unless FAILOVER_ORACLE_DSN is set, so a run without
a database reports them as deselected and never as passed. See test_import_oracle_live.py
for what they need and how to start an Oracle Free container for them.
"""
from __future__ import annotations

import os

import pytest

MARKER = "oracle_live"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: runs against a real Oracle database; deselected unless "
        "FAILOVER_ORACLE_DSN is set (tests/integration/oracle_live)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("FAILOVER_ORACLE_DSN"):
        return
    deselected = [item for item in items if item.get_closest_marker(MARKER)]
    if deselected:
        items[:] = [item for item in items if not item.get_closest_marker(MARKER)]
        config.hook.pytest_deselected(items=deselected)
