"""Tests build a step's context in one place (tests.support.step_context), so a change to
the action contract touches one helper, not every test file."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO


def hand_built_contexts(root: Path) -> list[str]:
    """Every call of `Context(...)` or `base.Context(...)` in test code outside tests/support.py."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "support.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name == "Context":
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_no_test_builds_a_step_context_by_hand() -> None:
    assert hand_built_contexts(REPO / "tests") == []


def test_the_check_finds_a_planted_one(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text("from actions.base import Context\nctx = Context('p')\n")
    assert hand_built_contexts(tests) == ["tests/test_x.py:2"]
