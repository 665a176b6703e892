"""Property (issue 10): whatever passes `validate` must run.

Hypothesis mutates the shipped policies (policies/*.yaml, policies/examples/*.yaml): values
replaced by hostile ones (NaN, infinity, 0, huge numbers, empty and 5,000-character strings,
NUL, newlines, wrong types, odd cron lines), keys deleted, unknown keys added, list items
dropped or repeated, values moved to other keys. For each mutant, in process through
`engine.cli.main`:

- `validate` exits 0 or 2, never with an internal error; a refusal prints only problem lines;
- if it validated: `dry-run engage`, `dry-run restore` and `dry-run job NAME` exit 0 or 1,
  never with an internal error;
- one monitor cycle (the real Monitor and Engine, as `run` builds them) raises nothing
  but the engine's own expected errors;
- `status --json` exits 0 and prints valid JSON (no NaN, no Infinity).

Every host, port and URL is first rewritten to 127.0.0.1 port 9 (nothing listens: refused
at once) and every absolute path moved under a temp dir; an audit hook fails any socket that
would reach beyond 127.0.0.0/8, so a mutant cannot reach the network either. The counts
(mutants tried, valid, internal errors) are printed at the end (`pytest -s`).
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import ipaddress
import json
import math
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import cli
from engine.errors import FailoverError
from tests.support import REPO

SHIPPED = sorted([*REPO.glob("policies/*.yaml"), *REPO.glob("policies/examples/*.yaml")])
# Read once: every example of a run starts from the same text (hypothesis replays examples).
TEXTS = {path: path.read_text(encoding="utf-8") for path in SHIPPED}
# Without the [oracle] extra (Debian's python3) running a policy with import_oracle is
# refused by design (exit 2, one line naming the extra): mutate the others only.
_ORACLEDB = importlib.util.find_spec("oracledb") is not None
RUNNABLE = [path for path in SHIPPED if _ORACLEDB or "import_oracle" not in TEXTS[path]]
REFUSED_PORT = 9  # discard: nothing listens on loopback, so a connect is refused at once
MAX_EXAMPLES = int(os.environ.get("FAILOVER_MUTANTS", "150"))

HOSTILE: list[Any] = [
    math.nan, math.inf, -math.inf, 0, -1, 1, 2, 10**30, 2**63, 1.5, 1e300,
    "", " ", "x\n", "name\n", "a\0b", "a" * 5000, "é" * 300, "\u202eevil", "\x1b[2J",
    "0s", "0", "0ms", "1ms", "1s", "30s", "366d", "367d", "-5s", "1e400", ".nan", "10 minutes",
    "17 * * * *", "*/5 * * * *", "@hourly", "127.0.0.1", "localhost", "www.example.org.",
    "relative/file", "state", 3, 100, 65535, 0.5,
    "99 * * * *", "banana * * * *", "x x x x x", "0 0 30 2 *", "@reboot", "* * * * * *",
    "/dev/zero", "../../../etc/passwd", "127.0.0.1:99999", "[::1]:53", "-", "%",
    True, False, None, [], {}, [1, "x"], {"k": "v"}, {"lock": {}},
]
COUNTS: dict[str, int] = {}


# -- the shipped policies, made local ---------------------------------------------------


def _localize(node: Any, root: Path, key: str | None = None) -> Any:
    """A copy of `node` that can reach only loopback and only files under `root`."""
    if isinstance(node, dict):
        out = {k: _localize(v, root, k) for k, v in node.items()}
        if key in ("smtp", "tcp"):
            out.update(host="127.0.0.1", port=REFUSED_PORT)
        elif key in ("nsupdate", "fetch"):
            if "server" in out or key == "nsupdate":
                out["server"] = "127.0.0.1"
            out["port"] = REFUSED_PORT
        elif key == "wait_dns":
            out["servers"] = [f"127.0.0.1:{REFUSED_PORT}"]
        if "retries" in out:
            out["retries"] = 0
        return out
    if isinstance(node, list):
        return [_localize(v, root, key) for v in node]
    if isinstance(node, str):
        if key == "url":
            return f"{node.split(':', 1)[0]}://127.0.0.1:{REFUSED_PORT}/health"
        if key == "source" and "@" in node:
            return "dumper@127.0.0.1:/srv/dump.zip"
        if node.startswith("/"):
            return str(root / "abs" / node.lstrip("/"))
    return node


def _write_fixtures(policy: dict[str, Any], base: Path) -> None:
    """Secret files and the other files the policy names, so steps plan past them."""
    def place(value: str) -> Path:
        path = Path(value) if Path(value).is_absolute() else base / value
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    for name, value in (policy.get("secrets") or {}).items():
        path = place(value)
        if name == "tsig":
            path.write_text('key "k" { algorithm hmac-sha256; secret "c2VjcmV0c2VjcmV0"; };\n')
        elif name == "oracle":
            path.write_text("[oracle]\nuser = u\npassword = p\ndsn = 127.0.0.1:9/X\n")
        else:
            path.write_text(f"[client]\nuser = u\npassword = p\nhost = 127.0.0.1\n"
                            f"port = {REFUSED_PORT}\n")
        os.chmod(path, 0o600)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    for job in (policy.get("jobs") or {}).values():
        if job.get("status_log"):
            place(job["status_log"]).write_text(f"{now} INFO: completed ok\n")
    for step in _all_steps(policy):
        ((kind, options),) = step.items()
        if kind == "check_dump_age" and options.get("status_log"):
            place(options["status_log"]).write_text(f"{now} INFO: completed ok\n")
        if kind == "fetch":
            for option in ("identity", "known_hosts"):
                if options.get(option):
                    path = place(options[option])
                    path.write_text("")
                    os.chmod(path, 0o600)


def _all_steps(policy: dict[str, Any]) -> list[dict[str, Any]]:
    steps = [*(policy.get("engage") or []), *(policy.get("restore") or [])]
    for job in (policy.get("jobs") or {}).values():
        steps.extend(job.get("steps") or [])
    return [s for s in steps if isinstance(s, dict) and len(s) == 1]


# -- mutations -----------------------------------------------------------------------------


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at]
    if isinstance(node, dict):
        for k, v in node.items():
            found.extend(_paths(v, (*at, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found.extend(_paths(v, (*at, i)))
    return found


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def _mutate(data: dict[str, Any], draw: Any) -> str:
    paths = _paths(data)[1:]
    path = draw(st.sampled_from(paths))
    parent, last = _get(data, path[:-1]), path[-1]
    op = draw(st.sampled_from(["set", "set", "set", "delete", "add", "repeat", "move"]))
    if op == "set":
        # Mostly a value of the same type, so that many mutants validate and run further.
        current = parent[last]
        same = [v for v in HOSTILE if type(v) is type(current)] or HOSTILE
        pool = same if draw(st.integers(0, 3)) else HOSTILE
        parent[last] = copy.deepcopy(draw(st.sampled_from(pool)))
    elif op == "delete":
        del parent[last]
    elif op == "add":
        target = parent if isinstance(parent, dict) else _get(data, path)
        if isinstance(target, dict):
            target[draw(st.sampled_from(["intervall", "extra", "timeout", "label", "x\n"]))] = \
                copy.deepcopy(draw(st.sampled_from(HOSTILE)))
        elif isinstance(target, list):
            target.append(copy.deepcopy(draw(st.sampled_from(HOSTILE))))
    elif op == "repeat" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    else:  # move: a value from elsewhere in the policy (type confusion)
        parent[last] = copy.deepcopy(_get(data, draw(st.sampled_from(paths))))
    return f"{op} {'.'.join(map(str, path))}"


# -- the network fence ------------------------------------------------------------------

_FENCE = {"on": False}


def _loopback(host: object) -> bool:
    if host in (None, "", "localhost", b"localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _fence(event: str, args: tuple[Any, ...]) -> None:
    if not _FENCE["on"]:
        return
    host = None
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple):
        host = args[1][0]
    if host is not None and not _loopback(host if not isinstance(host, bytes)
                                          else host.decode(errors="replace")):
        # Looks like a failed lookup to the code under test, so it takes its usual path.
        raise socket.gaierror(socket.EAI_NONAME, f"blocked by the test: {host!r} is not "
                              "loopback")


sys.addaudithook(_fence)


@contextlib.contextmanager
def _fenced() -> Iterator[None]:
    _FENCE["on"] = True
    try:
        yield
    finally:
        _FENCE["on"] = False


# -- one mutant ---------------------------------------------------------------------------


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _no_internal_error(what: str, text: str, mutation: list[str]) -> None:
    if "internal error" in text or "Traceback" in text:
        COUNTS["internal_errors"] = COUNTS.get("internal_errors", 0) + 1
        pytest.fail(f"{what}: internal error for mutant {mutation}:\n{text}")


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def _one_cycle(policy_file: Path, state_dir: Path) -> None:
    """One monitor cycle, built as `run` builds it (minus signals and the lock)."""
    from engine.failover import Engine
    from engine.monitor import Monitor
    from engine.policy import load_policy

    policy = load_policy(policy_file, state_dir=state_dir)
    engine = Engine(policy, send_mail=True)
    engine.runner._sleep = lambda _seconds: None  # retries without the backoff waits
    Monitor(engine).cycle()


def _check_mutant(base: Path, data: dict[str, Any], mutation: list[str]) -> None:
    COUNTS["tried"] = COUNTS.get("tried", 0) + 1
    policy_file = base / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    state = base / "state"
    at = ("--policy", str(policy_file), "--state-dir", str(state))
    code, out, err = _cli(*at, "validate")
    _no_internal_error("validate", out + err, mutation)
    assert code in (0, 2), (mutation, code, err)
    if code == 2:
        COUNTS["refused"] = COUNTS.get("refused", 0) + 1
        assert out == "" and err.strip(), mutation
        return
    COUNTS["valid"] = COUNTS.get("valid", 0) + 1
    runs = [("dry-run", "engage"), ("dry-run", "restore")]
    runs += [("dry-run", "job", name) for name in (data.get("jobs") or {})]
    for argv in runs:
        code, out, err = _cli(*at, *argv)
        _no_internal_error(" ".join(argv), out + err, mutation)
        assert code in (0, 1), (mutation, argv, code, err)
    # An expected, one-line error (FailoverError) is not an internal error; anything else is.
    with contextlib.suppress(FailoverError):
        _one_cycle(policy_file, state)
    code, out, err = _cli(*at, "status", "--json")
    _no_internal_error("status --json", out + err, mutation)
    assert code == 0, (mutation, err)
    assert isinstance(_strict_json(out), dict), mutation


@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def _mutants_run_or_are_refused(data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(RUNNABLE), label="policy")
    with tempfile.TemporaryDirectory(prefix="mutant-") as folder:
        base = Path(folder)
        policy = _localize(yaml.safe_load(TEXTS[source]), base)
        _write_fixtures(policy, base)
        mutation = [f"{source.name}:"]
        for _ in range(data.draw(st.integers(1, 2), label="mutations")):
            mutation.append(_mutate(policy, data.draw))
        with _fenced():
            _check_mutant(base, policy, mutation)


def test_shipped_policies_localized_are_valid(tmp_path: Path) -> None:
    """The mutants' starting points validate: a refusal below is the mutation's doing."""
    assert len(SHIPPED) >= 3
    for source in SHIPPED:
        policy = _localize(yaml.safe_load(source.read_text()), tmp_path)
        path = tmp_path / f"{source.stem}.yaml"
        path.write_text(yaml.safe_dump(policy, sort_keys=False))
        code, _out, err = _cli("--policy", str(path), "validate")
        assert code == 0, err


def test_mutated_policies_never_give_an_internal_error() -> None:
    COUNTS.clear()
    _mutants_run_or_are_refused()
    tried, valid = COUNTS.get("tried", 0), COUNTS.get("valid", 0)
    print(f"\nmutants tried: {tried}, refused by validate: {COUNTS.get('refused', 0)}, "
          f"valid and run: {valid}, internal errors: {COUNTS.get('internal_errors', 0)}")
    assert tried >= min(MAX_EXAMPLES, 50)
    assert valid > 0, "no mutant validated: the property checked nothing past validate"
