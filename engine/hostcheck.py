"""Host checks: can this machine run the policy? (`validate --host`, and before acting).

A policy can validate in CI, where its secrets and certificates do not exist; the host
checks are what make sure it will work where it runs:

- every file under `secrets:` exists, is owned by the engine's user, mode 0600/0400;
- each probe reports what it misses through its own `host_problems()` (an http probe:
  its `client_cert`, `client_key` and `ca_file` must load as PEM), one line per option;
- `state_dir`, the metrics file's directory and each job's work dir and status log
  directory are writable directories, or can be created;
- the notify relay's `ca_file` loads;
- each step whose action has `host_problems(ctx)` reports what it misses (a program
  not on PATH, an unusable key file, ...).

`host_problems(policy)` returns one line per problem, naming the key and the file; an
empty list means the host is ready. With a `quorum:` block, `validate --host` also reaches
the etcd store (engine/quorumcheck.py); these checks never connect to it, so an etcd
outage is never a host problem before acting (`engage --now --without-quorum` must
start). Action modules are imported lazily, so only the libraries the policy's own step
kinds need are loaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import FailoverError
from engine.extras import install_hint
from engine.policy import Policy, Step
from engine.secrets import SecretStore, check_secret_file
from engine.tlsfiles import tls_file_problems


def host_problems(policy: Policy, *, servers: bool = False) -> list[str]:
    """Every problem that would stop the policy on this host, one line each.

    `servers` (`validate --host`) also asks each step's `server_problems(ctx)`, which may
    connect to a server the step uses (import_oracle: the PDB, release, privileges); the
    checks before `run`, `engage` and `restore` do not, so a database being down for
    maintenance cannot stop a failover or the monitor."""
    problems: list[str] = []
    for name, path in policy.secrets.items():
        problem = check_secret_file(path)
        if problem:
            problems.append(f"secrets.{name}: {problem}")
    for name, probe in policy.probes.items():
        problems.extend(_probe_problems(f"probes.{name}.{probe.kind}", probe.kind, probe.params))
    smtp = ((policy.notify or {}).get("email") or {}).get("smtp") or {}
    if smtp.get("ca_file"):
        problems.extend(f"notify.email.smtp.{line}"
                        for line in tls_file_problems({"ca_file": smtp["ca_file"]}))
    bad: list[Path] = []
    for key, directory in _directories(policy):
        # Defaults live under state_dir: one line for a bad state_dir, not one per use.
        if any(directory == b or b in directory.parents for b in bad):
            continue
        problem = _dir_problem(directory)
        if problem:
            bad.append(directory)
            problems.append(f"{key}: {problem}")
    store = SecretStore(policy)
    for step in policy.all_steps():
        problems.extend(_step_problems(policy, step, store, servers))
    return problems


def _directories(policy: Policy) -> list[tuple[str, Path]]:
    """Directories the engine writes to, by the key that decides them."""
    found = [("state_dir", policy.state_dir)]
    if policy.monitor.metrics_file is not None:
        found.append(("monitor.metrics_file", policy.monitor.metrics_file.parent))
    for name, job in policy.jobs.items():
        found.append((f"jobs.{name}.work_dir", job.work_dir))
        if job.status_log is not None:
            found.append((f"jobs.{name}.status_log", job.status_log.parent))
    return found


def _dir_problem(directory: Path) -> str | None:
    """None when `directory` is a writable directory or could be created."""
    if directory.exists():
        if not directory.is_dir():
            return f"{directory} exists but is not a directory"
        if not os.access(directory, os.W_OK | os.X_OK):
            return (f"{directory} is not writable by uid {os.geteuid()} "
                    "(fix its owner, or choose another with --state-dir)")
        return None
    parent = directory.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{directory} cannot be created: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return (f"{directory} does not exist and cannot be created: {parent} is not writable "
                f"by uid {os.geteuid()} (create it, or choose another with --state-dir)")
    return None


def _probe_problems(where: str, kind: str, params: dict[str, Any]) -> list[str]:
    """The probe's own `host_problems()`, each line prefixed with the probe's key path."""
    from actions.registry import probe_class

    try:
        probe = probe_class(kind)(params)
    except ModuleNotFoundError as exc:
        return [f"{where}: needs the Python module {exc.name!r} "
                "(run bin/bootstrap to install the dependencies)"]
    except (ImportError, AttributeError, KeyError) as exc:
        return [f"{where}: cannot load the probe: {exc}"]
    except (ValueError, TypeError) as exc:
        # The schema has accepted the options, so this is the probe refusing them.
        return [f"{where}: {exc}"]
    check = getattr(probe, "host_problems", None)
    return [f"{where}.{line}" for line in check()] if check is not None else []


def _step_problems(policy: Policy, step: Step, store: SecretStore,
                   servers: bool = False) -> list[str]:
    from actions.base import Context
    from actions.registry import STEP_KINDS, step_class

    module = STEP_KINDS.get(step.kind, "").split(":")[0]
    try:
        cls = step_class(step.kind)
    except ModuleNotFoundError as exc:
        if exc.name == module:  # the step kind's module is not written yet: nothing to ask
            return []
        hint = install_hint(exc.name or "")
        if hint:
            return [f"{step.where} ({step.kind}): {hint}"]
        return [f"{step.where} ({step.kind}): needs the Python module {exc.name!r} "
                "(run bin/bootstrap to install the dependencies)"]
    except (ImportError, AttributeError, KeyError) as exc:
        return [f"{step.where} ({step.kind}): cannot load the action: {exc}"]
    if not hasattr(cls, "host_problems"):
        return []
    work_dir = None
    for job in policy.jobs.values():
        if any(s is step for s in job.steps):
            work_dir = job.work_dir
    ctx = Context(
        policy_name=policy.name, state_dir=policy.state_dir, step_id=step.where,
        secret=store.path, log=lambda _line: None, policy=policy,
        work_dir=work_dir,
    )
    try:
        action = cls(step.params)
        lines = action.host_problems(ctx)
        if servers and hasattr(action, "server_problems"):
            lines += action.server_problems(ctx)
        return [f"{step.where} ({step.kind}): {line}" for line in lines]
    except FailoverError as exc:
        return [f"{step.where} ({step.kind}): {exc}"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # The schema has accepted the options, so this is the action refusing this host.
        return [f"{step.where} ({step.kind}): host check failed: {exc}"]
