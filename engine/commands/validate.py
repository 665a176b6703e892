"""`failover-engine validate [--host]`: check the policy, report every problem at once.

Without `--host` only the policy file is checked (schema, then references), so it can
run in CI where the secrets do not exist::

    $ failover-engine --policy policies/gocdb.yaml validate
    OK: policies/gocdb.yaml: policy 'gocdb' (6 engage steps, 5 restore steps, 1 jobs)

    $ failover-engine --policy broken.yaml validate
    broken.yaml:14:3: monitor.intervall: unknown key 'intervall' (did you mean 'interval'? …)
    broken.yaml:21:7: engage[2].nsupdate.key: secret 'tsig' is not defined (defined secrets: none…)

A notify step that repeats an event mail (engine/notifier.py) is a warning on stderr,
and so is a quorum observer that is not an actor yet has engage or restore steps acting on
this host's files (engine/runs_on.py: they never run here); the exit code stays 0.
`--host` adds the checks of engine/hostcheck.py (secret files and their modes,
certificates, state_dir, programs the steps need) and, with a `quorum:` block, reaches
every etcd endpoint (engine/quorumcheck.py): one line per endpoint reached on stdout, an
endpoint that cannot be reached, a store without a leader or a refused login is a
problem. Exit 0 when all is well, 2 on any problem; every problem is one line on stderr.
"""
from __future__ import annotations

import argparse
import sys

from engine.commands import load, policy_path
from engine.errors import PolicyError


def main(args: argparse.Namespace) -> int:
    """Validate the policy (and the host with `args.host`); print problems; return 0 or 2."""
    try:
        policy = load(args)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    shown = policy_path(args)
    if any(step.kind == "notify" for step in (*policy.engage, *policy.restore)):
        # Only then can a step repeat an event mail (and only then is the notifier imported).
        from engine.notifier import duplicate_notify_steps

        for warning in duplicate_notify_steps(policy):  # a warning: exit stays 0
            print(f"warning: {shown}: {warning}", file=sys.stderr)
    if isinstance(policy.raw.get("quorum"), dict):
        from engine.runs_on import runs_on_warnings, unfenced_update_warnings
        from engine.schemacheck import load_schemas

        for warning in [*runs_on_warnings(policy.raw, load_schemas()),
                        *unfenced_update_warnings(policy.raw)]:  # exit stays 0
            print(f"warning: {shown}: {warning}", file=sys.stderr)
    summary = (f"policy '{policy.name}' ({len(policy.engage)} engage steps, "
               f"{len(policy.restore)} restore steps, {len(policy.jobs)} jobs)")
    if getattr(args, "host", False):
        from engine.hostcheck import host_problems

        problems = host_problems(policy, servers=True)
        if isinstance(policy.raw.get("quorum"), dict):
            from engine.quorumcheck import store_report

            store = store_report(policy)
            for line in store.reached:
                print(f"{shown}: {line}")
            problems += store.problems
        if problems:
            for problem in problems:
                print(f"{shown}: host check: {problem}", file=sys.stderr)
            return 2
        print(f"OK: {shown}: {summary}; host checks passed")
        return 0
    print(f"OK: {shown}: {summary}")
    return 0
