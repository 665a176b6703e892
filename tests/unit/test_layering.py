"""The layering HACKING.md states, enforced: data flows CLI → commands → policy → machine →
runner → action, and no module imports a layer above its own.

Every import counts, including the lazy ones inside functions (the project imports heavy
modules lazily, so a top-level-only check would miss most of them).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO

# The orchestration layers: the CLI, its subcommands, and what ties machine and runner together.
_ORCHESTRATION = ("engine.cli", "engine.commands", "engine.monitor", "engine.failover",
                  "engine.jobs")

# module prefix → module prefixes it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # Actions own only their effect: never the CLI, the machine, the runner or the monitor.
    "actions": (*_ORCHESTRATION, "engine.machine", "engine.runner"),
    # The runner drives actions; the machine and the orchestration drive the runner.
    "engine.runner": (*_ORCHESTRATION, "engine.machine"),
    # The machine is states and transitions as data: it runs nothing.
    "engine.machine": (*_ORCHESTRATION, "engine.runner", "actions"),
    # Loading a policy is below everything that uses one.
    "engine.policy": (*_ORCHESTRATION, "engine.machine", "engine.runner"),
    "engine.yamlsource": (*_ORCHESTRATION, "engine.machine", "engine.runner"),
    "engine.schemacheck": (*_ORCHESTRATION, "engine.machine", "engine.runner"),
    "engine.references": (*_ORCHESTRATION, "engine.machine", "engine.runner"),
    # Small utilities shared by actions and the engine import nothing above them.
    "engine.errors": (*_ORCHESTRATION, "engine.machine", "engine.runner", "actions"),
    "engine.durations": (*_ORCHESTRATION, "engine.machine", "engine.runner", "actions"),
    "engine.fsutil": (*_ORCHESTRATION, "engine.machine", "engine.runner", "actions"),
    "engine.logs": (*_ORCHESTRATION, "engine.machine", "engine.runner", "actions"),
    # Only the CLI dispatches to subcommands; subcommands never call back into the CLI.
    "engine": ("engine.cli",),
}
_MAY_IMPORT_CLI = {"engine.cli", "engine.manpage"}  # the man page is made from the CLI's parser
_MAY_IMPORT_COMMANDS_PREFIX = ("engine.cli", "engine.commands")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement in `path` names, with its line number."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports: resolve against this module's package
                package = _module_name(path).split(".")[: -node.level]
                base = ".".join([*package, node.module] if node.module else package)
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            # `from engine import cli` imports the module engine.cli
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _product_files() -> list[Path]:
    return sorted([*REPO.joinpath("engine").rglob("*.py"), *REPO.joinpath("actions").rglob("*.py")])


def _violations() -> list[str]:
    problems: dict[tuple[str, str], str] = {}  # (place, layer) → message: one line each
    for path in _product_files():
        name = _module_name(path)
        rules = [banned for owner, banned in FORBIDDEN.items() if _matches(name, owner)]
        for line, imported in _imports(path):
            where = f"{path.relative_to(REPO)}:{line}"
            for banned in rules:
                hits = [b for b in banned if _matches(imported, b) and not _matches(name, b)]
                if hits and not (_matches(imported, "engine.cli") and name in _MAY_IMPORT_CLI):
                    problems.setdefault((where, hits[0]),
                                        f"{where}: {name} imports {imported} (layer {hits[0]})")
            if (_matches(imported, "engine.commands")
                    and not any(_matches(name, p) for p in _MAY_IMPORT_COMMANDS_PREFIX)):
                problems.setdefault((where, "engine.commands"),
                                    f"{where}: {name} imports {imported}: only the CLI "
                                    "dispatches to subcommands")
            for outside in ("tests", "bench"):
                if _matches(imported, outside):
                    problems.setdefault((where, outside),
                                        f"{where}: product code imports {imported}")
    return sorted(problems.values())


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert _violations() == []


@pytest.mark.parametrize("source, module, expected", [
    ("from engine.runner import Runner\n", "actions/zz_probe.py", "engine.runner"),
    ("def f():\n    from engine import cli\n", "actions/zz_probe.py", "engine.cli"),
    ("import engine.commands.status\n", "engine/zz_probe.py", "engine.commands"),
    ("from engine.monitor import Monitor\n", "engine/runner.py", "engine.monitor"),
])
def test_the_rule_catches_a_forbidden_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             source: str, module: str, expected: str) -> None:
    """The check itself can fail: a planted import (also a lazy one) is reported."""
    fake_repo = tmp_path / "repo"
    target = fake_repo / module
    target.parent.mkdir(parents=True)
    target.write_text(source)
    (fake_repo / ("actions" if module.startswith("engine") else "engine")).mkdir()
    monkeypatch.setattr(__import__(__name__, fromlist=["REPO"]), "REPO", fake_repo)
    problems = _violations()
    assert len(problems) == 1 and expected in problems[0], problems
