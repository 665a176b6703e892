"""One module per subcommand; each exposes `main(args: argparse.Namespace) -> int`.

`args.policy` is the --policy value or None (see `policy_path`), and
`args.state_dir` the --state-dir override or None. Use `load(args)` to get the Policy.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from engine.policy import Policy

DEFAULT_POLICY = "policies/gocdb.yaml"


def policy_path(args: argparse.Namespace) -> Path:
    """--policy, then $FAILOVER_POLICY, then policies/gocdb.yaml."""
    return Path(args.policy or os.environ.get("FAILOVER_POLICY") or DEFAULT_POLICY)


def load(args: argparse.Namespace) -> Policy:
    """Load and validate the policy the command line names (raises PolicyError)."""
    from engine.errors import UsageError
    from engine.policy import load_policy
    from engine.schemakeywords import path_problem

    override = getattr(args, "state_dir", None)
    # The same bounds as the policy's state_dir (no NUL, at most 1024 bytes).
    if override is not None and (problem := path_problem(str(override))):
        raise UsageError(f"--state-dir: {problem}")
    policy = load_policy(policy_path(args), state_dir=override)
    LOADED[:] = [policy]  # its event outbox is retried when the command ends (engine/cli.py)
    return policy


# The policy the running command loaded, for the outbox retry at its end. Kept here rather
# than in engine.notifier so that a command with nothing waiting never imports the mail
# and channel modules (BENCHMARKS.md: cli.validate, cli.status).
LOADED: list[Policy] = []


def take_loaded() -> Policy | None:
    """The policy this command loaded (once), or None."""
    return LOADED.pop() if LOADED else None


def preflight(policy: Policy) -> None:
    """The host checks `run`, `engage`, `restore` and `job` always make before acting."""
    from engine.errors import PolicyError
    from engine.hostcheck import host_problems

    problems = host_problems(policy)
    if problems:
        raise PolicyError([f"{policy.path}: host check: {p}" for p in problems])
