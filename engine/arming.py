"""Is the failover armed? The conditions under which it could never engage, however long
production is down — so the engine must say so instead of looking healthy.

The failover is *disarmed* when

- every guard failed in DISARM_AFTER cycles in a row: an outage of the target would then
  be "inconclusive" (this host may be cut off) and never counted, or
- the target's probe cannot run at all: its client certificate or key is missing,
  unreadable or not PEM, or the certificate has expired. A failed probe then says
  nothing about production, so the monitor counts the cycle as inconclusive too.

The monitor records the reason in the state file (`disarmed`, `disarmed_since`), logs a
warning and mails once when it starts (and once when it ends); `check engine` says
WARNING "the failover is disarmed: …", status shows it, and the metric
`failover_engine_disarmed` is 1. Client certificates also get an expiry warning
CERT_WARNING_DAYS ahead (`check engine --cert-warning`). Pure functions, no I/O.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.state import parse_isotime

DISARM_AFTER = 3
CERT_WARNING_DAYS = 14.0


def guard_streak(previous: int, guards_ok: Sequence[bool]) -> int:
    """Cycles in a row in which every guard failed (0 without guards or after one answered)."""
    if guards_ok and not any(guards_ok):
        return previous + 1
    return 0


def disarm_reason(target: str, target_problem: str | None, guards: Sequence[str],
                  streak: int) -> str | None:
    """Why the failover cannot engage now, in one line, or None while it is armed."""
    if target_problem:
        return f"the target probe {target} cannot run: {target_problem}"
    if guards and streak >= DISARM_AFTER:
        # Stable while the condition lasts (no running count): it is compared from cycle to
        # cycle to warn and mail once. The guards' own details are in status.
        names = ", ".join(guards)
        return (f"every guard ({names}) failed {DISARM_AFTER} cycles in a row or more, so an "
                f"outage of {target} would count as inconclusive and never engage")
    return None


def certificate_days_left(probe: Mapping[str, Any], now: datetime) -> float | None:
    """Days until the probe's client certificate expires (negative once expired), from the
    `cert_not_after` the monitor records in `last_probes`; None without one."""
    try:
        moment = parse_isotime(probe.get("cert_not_after"))
    except (TypeError, ValueError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return (moment - now).total_seconds() / 86400.0
