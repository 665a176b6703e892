"""`failover-engine job NAME [--force]`: run one job now (what cron calls). See engine/jobs.py."""
from __future__ import annotations

import argparse

from engine.commands import load, preflight
from engine.jobs import run_job


def main(args: argparse.Namespace) -> int:
    """Run the job; exit 0 when it completed ok, 1 otherwise."""
    policy = load(args)
    preflight(policy)
    result = run_job(policy, args.name, force=args.force)
    if result.ok:
        print(f"job {args.name}: completed ok")
        return 0
    failed = result.report.failed if result.report is not None else None
    if failed is not None and not result.refused:
        # The runner has just logged this step's error: say where, not the same text again.
        print(f"job {args.name}: ERROR: step {failed.index + 1} ({failed.step.name}) failed "
              "(the reason is on the line above and in the job's status log)")
    else:
        print(f"job {args.name}: ERROR: {result.reason}")
    return 1
