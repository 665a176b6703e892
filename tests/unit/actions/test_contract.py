"""The step contract, checked for every kind of actions/registry.py (certbot's
BaseAuthenticatorTest style: one set of checks, one case per kind).

For each kind, with options that are valid and safe here (temp dirs, 127.0.0.1):
- `plan()` changes nothing: the whole temp tree (names, types, modes, sizes, contents,
  link targets) is the same before and after;
- `apply()` writes only where the engine lets it: the state dir, the work dir and what
  the kind's fragment declares with `x-writes` (the unit's ReadWritePaths come from it);
- applied once, the step then reports "already done": `plan().done`, or a second
  `apply()` with `changed` False. Kinds that repeat their work by design (a dump or an
  import takes the data as it is now) are listed in REPEATS with the reason;
- options that pass the schema but cannot work here give one clear line: a
  `FailoverError` (StepError, ...) or a `Plan.problem`, never a traceback or a
  multi-line message.

Kinds whose work needs a server (DNS, MariaDB, Oracle) run here against a closed
loopback port: plan must not change anything and plan or apply must say in one line
what is unreachable. Their work against the real servers is tested in tests/integration/.
A kind added to the registry without a case here fails `test_every_kind_has_a_case`.
"""
from __future__ import annotations

import hashlib
import os
import socket
import stat
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from actions.base import Context, Outcome, Plan
from actions.registry import STEP_KINDS, build_step
from engine.drillkit.smtp import SmtpSink
from engine.errors import FailoverError
from engine.policy import ProbeSpec, Step
from engine.render import step_write_paths
from engine.schemacheck import load_schemas
from tests.support import step_context

LOOPBACK = "127.0.0.1"

# Kinds whose second run does the work again, on purpose, and why.
REPEATS = {
    "dump_mariadb": "each run dumps the database as it is now (then rotates)",
    "import_mariadb": "each run loads the dump given into staging and swaps it in",
    "import_oracle": "each run replaces the schema from the dump given",
    "wait_dns": "waiting is an observation: it never reports done before it looked",
}
# Kinds that need a server: here they meet a closed port and must say so in one line.
NEEDS_SERVER = {"nsupdate", "wait_dns", "dump_mariadb", "import_mariadb", "import_oracle",
                "probe"}


@dataclass
class World:
    """A temp tree for one case: the policy's directory, state dir, work dir, secrets."""

    root: Path
    notify: dict[str, Any] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    probes: dict[str, ProbeSpec] = field(default_factory=dict)  # the policy's `probes:`

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    def secret(self, name: str) -> Path:
        path = self.root / "secrets" / name
        if not path.exists():
            raise FailoverError(f"secret {name!r}: {path} does not exist")
        return path

    def write_secret(self, name: str, text: str) -> Path:
        path = self.root / "secrets" / name
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(text)
        path.chmod(0o600)
        return path

    def context(self, previous_output: Any = None, deadline: float | None = None) -> Context:
        policy = SimpleNamespace(path=self.root / "policy.yaml", name="contract",
                                 notify=self.notify, state_dir=self.state_dir,
                                 probes=self.probes)
        return step_context(self.state_dir, secret=self.secret, policy_name="contract",
                            step_id="engage[0]", log=self.logs.append, progress=self.progress,
                            policy=policy, sleep=lambda _s: None, work_dir=self.work_dir,
                            previous_output=previous_output, deadline=deadline)


@dataclass
class Case:
    """Good options, options that cannot work, and the previous step's output if any."""

    params: dict[str, Any]
    bad: dict[str, Any]
    previous_output: Any = None


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# --- one case per kind ---------------------------------------------------------------------


def case_lock(w: World, _: Any) -> Case:
    (w.root / "run").mkdir()
    return Case({"state": "present", "file": str(w.root / "run" / "engage.lock")},
                {"state": "present", "file": str(w.root / "no-such-dir" / "x" / "engage.lock")})


def case_symlink(w: World, _: Any) -> Case:
    certs = w.root / "certs"
    certs.mkdir()
    (certs / "old.pem").write_text("old\n")
    (certs / "new.pem").write_text("new\n")
    (certs / "current.pem").symlink_to("old.pem")
    return Case({"link": str(certs / "current.pem"), "target": "new.pem"},
                {"link": str(certs / "current.pem"), "target": "missing.pem"})


def case_disable_cron(w: World, _: Any) -> Case:
    cron = w.root / "cron.d"
    cron.mkdir()
    (cron / "refresh").write_text("17 * * * * root true\n")
    return Case({"file": str(cron / "refresh")}, {"file": str(cron / "never-there")})


def case_enable_cron(w: World, _: Any) -> Case:
    cron = w.root / "cron.d"
    cron.mkdir()
    parked = w.root / "parked"
    parked.mkdir(mode=0o700)
    (parked / "refresh").write_text("17 * * * * root true\n")
    return Case({"file": str(cron / "refresh"), "park_dir": str(parked)},
                {"file": str(cron / "never-there"), "park_dir": str(parked)})


def case_command(w: World, _: Any) -> Case:
    marker = w.work_dir / "marker"
    return Case({"argv": ["touch", str(marker)], "check": ["test", "-e", str(marker)]},
                {"argv": ["no-such-program-4e1f", "--now"]})


def case_check_dump_age(w: World, _: Any) -> Case:
    log = w.root / "import.log"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    log.write_text(f"{now} INFO: completed ok\n")
    return Case({"status_log": str(log), "max_age": "7h"},
                {"status_log": str(w.root / "never-written.log"), "max_age": "7h"})


def case_fetch(w: World, _: Any) -> Case:
    remote = w.root / "production"
    remote.mkdir()
    (remote / "dump.sql").write_bytes(b"-- dump\n" * 100)
    return Case({"source": str(remote / "dump.sql")},
                {"source": str(remote / "missing.sql")})


def case_unzip(w: World, _: Any) -> Case:
    archive = w.work_dir / "dump.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("dump.sql", "-- dump\n" * 100)
    return Case({"file": str(archive)}, {"file": str(w.work_dir / "missing.zip")})


def case_archive(w: World, _: Any) -> Case:
    dump = w.work_dir / "dump.sql"
    dump.write_text("-- dump\n")
    return Case({"file": str(dump), "dir": str(w.root / "archive"), "keep": 3},
                {"file": str(w.work_dir / "missing.sql"), "dir": str(w.root / "archive")})


def case_notify(w: World, smtp: SmtpSink) -> Case:
    w.notify = {"email": {"smtp": {"host": LOOPBACK, "port": smtp.port},
                          "from": "engine@contract.test", "to": ["admins@contract.test"]}}
    return Case({"message": "contract test"}, {"message": "no notify block"})


def case_nsupdate(w: World, _: Any) -> Case:
    w.write_secret("tsig", "key \"k\" {\n  algorithm hmac-sha256;\n"
                           "  secret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\";\n};\n")
    params = {"server": LOOPBACK, "port": closed_port(), "zone": "example.test.",
              "name": "www.example.test.", "set": "standby.example.test.", "key": "tsig"}
    return Case(params, {**params, "key": "absent-secret"})


def case_probe(w: World, _: Any) -> Case:
    w.probes["standby"] = ProbeSpec("standby", "tcp", {"host": LOOPBACK, "port": closed_port(),
                                                       "timeout": "1s"})
    return Case({"name": "standby"}, {"name": "never-defined"})


def case_wait_dns(w: World, _: Any) -> Case:
    params = {"name": "www.example.test.", "expect": "standby.example.test.",
              "servers": [LOOPBACK], "port": closed_port(), "interval": "100ms"}
    return Case(params, {**params, "type": "A", "expect": "not-an-address"})


def mariadb_options(w: World) -> None:
    w.write_secret("standby", f"[client]\nhost={LOOPBACK}\nport={closed_port()}\n"
                              "user=nobody\npassword=nothing\n")


def case_dump_mariadb(w: World, _: Any) -> Case:
    mariadb_options(w)
    (w.root / "dumps").mkdir()
    params = {"options": "standby", "database": "gocdb", "file": str(w.root / "dumps" / "d.sql")}
    return Case(params, {**params, "options": "absent-secret"})


def case_import_mariadb(w: World, _: Any) -> Case:
    mariadb_options(w)
    dump = w.root / "dump.sql"
    dump.write_text("-- MariaDB dump\nCREATE TABLE t (id INT);\n-- Dump completed\n")
    params = {"options": "standby", "database": "gocdb", "file": str(dump)}
    return Case(params, {**params, "options": "absent-secret"})


def case_import_oracle(w: World, _: Any) -> Case:
    w.write_secret("oracle", f"[oracle]\nuser = system\npassword = x\n"
                             f"dsn = {LOOPBACK}:{closed_port()}/XE\n")
    (w.root / "archive").mkdir()
    dump = w.root / "goc5dump.dmp"
    dump.write_bytes(b"DUMP" * 64)
    params = {"credentials": "oracle", "schema": "gocdb5", "last_good": str(w.root / "archive"),
              "dump": str(dump)}
    return Case(params, {**params, "credentials": "absent-secret"})


CASES: dict[str, Callable[[World, Any], Case]] = {
    "lock": case_lock, "symlink": case_symlink, "disable_cron": case_disable_cron,
    "enable_cron": case_enable_cron, "command": case_command,
    "check_dump_age": case_check_dump_age, "fetch": case_fetch, "unzip": case_unzip,
    "archive": case_archive, "notify": case_notify, "nsupdate": case_nsupdate,
    "wait_dns": case_wait_dns, "dump_mariadb": case_dump_mariadb,
    "import_mariadb": case_import_mariadb, "import_oracle": case_import_oracle,
    "probe": case_probe,
}


def test_every_kind_has_a_case() -> None:
    assert sorted(CASES) == sorted(STEP_KINDS), (
        "a registered step kind needs a contract case here (and one in the recipe's sense: "
        "see HACKING.md, 'A new step kind')")
    assert (set(REPEATS) | NEEDS_SERVER) <= set(STEP_KINDS)


# --- the checks ----------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under `root`: type, mode, size, content digest or link target."""
    found: dict[str, tuple[Any, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                found[str(path)] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[str(path)] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path)] = ("file", stat.S_IMODE(info.st_mode), info.st_size, digest)
    return found


def changed_paths(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def one_line(text: str | None) -> str:
    assert text, "an empty message"
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


@pytest.fixture
def world(tmp_path: Path) -> World:
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "work").mkdir(mode=0o700)  # the runner makes a job's work dir before its steps
    return World(tmp_path)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Any:
    """The SMTP sink for notify; the other kinds get nothing (closed ports)."""
    if request.node.callspec.params["kind"] == "notify":
        return request.getfixturevalue("smtp_sink")
    return None


def plan_quietly(action: Any, ctx: Context, root: Path) -> Plan:
    before = snapshot(root)
    plan = action.plan(ctx)
    assert snapshot(root) == before, f"plan() changed {changed_paths(before, snapshot(root))}"
    assert isinstance(plan, Plan)
    return plan


@pytest.mark.parametrize("kind", sorted(CASES))
def test_plan_changes_nothing_and_apply_is_idempotent(kind: str, world: World,
                                                      server: Any) -> None:
    case = CASES[kind](world, server)
    # The runner always gives a step a deadline (its timeout); a short one here bounds the
    # kinds that would wait for a server that never answers.
    deadline = time.monotonic() + 1.0 if kind in NEEDS_SERVER else None
    ctx = world.context(case.previous_output, deadline)
    action = build_step(kind, case.params)
    plan = plan_quietly(action, ctx, world.root)
    if kind in NEEDS_SERVER:
        # No server here: the plan or the run must say so in one line, and change nothing.
        before = snapshot(world.root)
        if plan.problem is None:
            with pytest.raises(FailoverError) as caught:
                action.apply(ctx)
            one_line(str(caught.value))
        else:
            one_line(plan.problem)
        allowed = [world.state_dir]  # a failed attempt may only leave its journal there
        assert all(any(Path(p) == a or a in Path(p).parents for a in allowed)
                   for p in changed_paths(before, snapshot(world.root)))
        return
    assert plan.problem is None, plan.problem
    assert not plan.done, f"{kind}: the case should start with work to do"
    before = snapshot(world.root)
    outcome = action.apply(ctx)
    assert isinstance(outcome, Outcome)
    writable = [world.state_dir, world.work_dir,
                *step_write_paths(Step(kind, case.params), load_schemas())]
    for path in changed_paths(before, snapshot(world.root)):
        assert any(Path(path) == w or w in Path(path).parents for w in writable), (
            f"{kind} wrote {path}, which its fragment's x-writes does not declare "
            f"(writable: {', '.join(map(str, writable))})")
    if kind in REPEATS:
        return
    again = build_step(kind, case.params)
    second_plan = plan_quietly(again, ctx, world.root)
    if not second_plan.done:
        second = again.apply(ctx)
        assert second.changed is False, f"{kind}: a second apply() changed things again"
    if kind == "notify":  # its effect is outside the tree: one mail, not two
        assert server.wait_for(1)
        assert len(server.messages) == 1


@pytest.mark.parametrize("kind", sorted(CASES))
def test_options_that_cannot_work_give_one_clear_line(kind: str, world: World,
                                                       server: Any) -> None:
    case = CASES[kind](world, server)
    if kind == "notify":
        world.notify = None  # no notify block: nowhere to send
    deadline = time.monotonic() + 1.0 if kind in NEEDS_SERVER else None
    ctx = world.context(case.previous_output, deadline)
    try:
        action = build_step(kind, case.bad)
        plan = plan_quietly(action, ctx, world.root)
    except FailoverError as exc:
        one_line(str(exc))
        return
    if plan.problem is not None:
        one_line(plan.problem)
    with pytest.raises(FailoverError) as caught:
        action.apply(ctx)
    one_line(str(caught.value))
