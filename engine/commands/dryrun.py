"""`failover-engine dry-run engage|restore|job NAME`: every step's plan, nothing changed.

The runner calls only `plan()`: it observes the world read-only, and hands each step's
planned output to the next step as a real run hands on applied ones (shown as `hands on:`).
Exit 1 when a step's plan names a problem (it would fail if run now).
"""
from __future__ import annotations

import argparse

from engine.commands import load
from engine.errors import UsageError
from engine.runner import Runner
from engine.state import StateStore


def main(args: argparse.Namespace) -> int:
    """Print the plan of the engage, restore or a job's steps."""
    policy = load(args)
    if args.what == "job":
        if not args.name or args.name not in policy.jobs:
            known = ", ".join(sorted(policy.jobs)) or "none"
            raise UsageError(f"{policy.path}: dry-run job needs a job name (jobs: {known})")
        steps, phase = policy.jobs[args.name].steps, f"job:{args.name}"
        work_dir = policy.jobs[args.name].work_dir
    else:
        if args.name:
            raise UsageError(f"dry-run {args.what} takes no name")
        steps, phase, work_dir = getattr(policy, args.what), args.what, None
    runner = Runner(policy, StateStore(policy.state_dir), None)
    report = runner.run(phase, steps, dry_run=True, work_dir=work_dir)
    print(f"dry-run {phase} of policy {policy.name} ({len(steps)} steps; nothing is changed)")
    for r in report.steps:
        plan = r.plan
        assert plan is not None
        if plan.problem:
            mark, text = "✘", f"WOULD FAIL: {plan.problem}"
        elif plan.done:
            mark, text = "=", f"already done: {plan.summary}"
        else:
            mark, text = "→", plan.summary
        print(f"  {mark} step {r.index + 1} {r.step.name}: {text}")
        if r.output is not None:  # what the next step gets, as in a real run
            print(f"      hands on: {r.output}")
    failing = report.would_fail
    if failing:
        print(f"{len(failing)} step(s) would fail")
        return 1
    return 0
