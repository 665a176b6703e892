"""One owner for each fact, enforced: product code (engine/, actions/) names the machine's
states only through `engine.states.State` and builds no path inside the state directory
by hand (`engine.paths.StatePaths` owns them).

The check reads the source with `ast`, so docstrings and comments may still mention
`state.json` or "watching"; what it catches is a string *value* that is a state name, or a
state-directory file name joined onto a path.
"""
from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine.states import State
from tests.support import REPO

STATE_NAMES = {s.value for s in State}
# File names that exist only inside a state directory: never spelled outside the owner.
STATE_FILES = {"state.json", "engine.lock", "audit.jsonl", "metrics.prom"}
# Directory and switch names of the state directory: flagged when joined onto a path.
STATE_DIR_NAMES = {"paused", "requests", "spool", "parked", "crash", "jobs", "work", "swap"}
OWNERS = {"engine/states.py", "engine/paths.py"}
# Strings that spell a state name but are not one, each with why (file, value) → how many.
# (Members of another enum, such as machine.Trigger.ENGAGED, are skipped: they are the
# owned definition of a different vocabulary.)
NOT_STATES: dict[tuple[str, str], int] = {
    ("engine/metrics.py", "paused"): 1,  # the metric family failover_engine_paused
    ("engine/metrics.py", "aborted"): 1,  # the metric family failover_engine_aborted
    ("engine/commands/drill.py", "engaged"): 1,  # a check's label in the drill's report
}


def _product_files() -> list[Path]:
    return sorted([*REPO.joinpath("engine").rglob("*.py"),
                   *REPO.joinpath("actions").rglob("*.py")])


def _not_state_values(tree: ast.AST) -> set[int]:
    """ids of string nodes that are not state values though they may spell one: dict keys
    and subscripts (JSON keys such as status's "paused" flag) and the members of an enum
    class (`class Trigger(StrEnum): ENGAGED = "engaged"` defines an event name)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            skip.update(id(k) for k in node.keys if k is not None)
        elif isinstance(node, ast.Subscript):
            skip.add(id(node.slice))
        elif isinstance(node, ast.ClassDef) and any(
                "Enum" in ast.unparse(base) for base in node.bases):
            skip.update(id(stmt.value) for stmt in node.body if isinstance(stmt, ast.Assign))
    return skip


def _joined_names(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants joined onto a path: `x / "spool"`, `x.joinpath("spool")`,
    `os.path.join(x, "spool")`."""
    found = []
    for node in ast.walk(tree):
        operands: list[ast.expr] = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            operands = [node.right]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("joinpath", "join"):
            operands = list(node.args)
        for operand in operands:
            if isinstance(operand, ast.Constant) and isinstance(operand.value, str):
                found.append((operand.lineno, operand.value))
    return found


def _violations() -> list[str]:
    problems = []
    for path in _product_files():
        name = path.relative_to(REPO).as_posix()
        if name in OWNERS:
            continue
        tree = ast.parse(path.read_text(), filename=name)
        skip = _not_state_values(tree)
        states: Counter[str] = Counter()
        lines: dict[str, list[int]] = {}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            if node.value in STATE_FILES:
                problems.append(f"{name}:{node.lineno}: state-dir file {node.value!r} spelled "
                                "by hand; use engine.paths.StatePaths")
            if node.value in STATE_NAMES and id(node) not in skip:
                states[node.value] += 1
                lines.setdefault(node.value, []).append(node.lineno)
        for value, count in states.items():
            if count > NOT_STATES.get((name, value), 0):
                problems.append(f"{name}:{lines[value]}: bare state name {value!r}; "
                                "use engine.states.State")
        for line, value in _joined_names(tree):
            if value in STATE_DIR_NAMES:
                problems.append(f"{name}:{line}: state-dir path {value!r} built by hand; "
                                "use engine.paths.StatePaths")
    return sorted(problems)


def test_states_and_state_dir_paths_have_one_owner() -> None:
    assert _violations() == []


@pytest.mark.parametrize("source, expected", [
    ('if record.state == "aborted":\n    pass\n', "bare state name 'aborted'"),
    ('BUSY = ("engaging", "engaged")\n', "bare state name 'engaging'"),
    ('flag = state_dir / "paused"\n', "state-dir path 'paused'"),
    ('spool = policy.state_dir.joinpath("spool")\n', "state-dir path 'spool'"),
    ('p = Path("x") / "state.json"\n', "state-dir file 'state.json'"),
])
def test_the_check_catches_a_planted_bare_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               source: str, expected: str) -> None:
    """The check itself can fail: each planted spelling is reported."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "actions").mkdir()
    (tmp_path / "actions" / "zz_probe.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    problems = _violations()
    assert any(expected in p for p in problems), problems


def test_json_keys_and_other_enums_are_not_taken_for_states(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "engine").mkdir()
    (tmp_path / "actions").mkdir()
    (tmp_path / "engine" / "zz_probe.py").write_text(
        'data = {"paused": True}\nif data["paused"]:\n    pass\n'
        'class Kind(StrEnum):\n    ENGAGED = "engaged"\n')
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert _violations() == []
