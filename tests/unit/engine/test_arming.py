"""When is the failover disarmed (engine/arming.py): pure rules, checked at the edges."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.arming import DISARM_AFTER, certificate_days_left, disarm_reason, guard_streak
from engine.state import isotime


def test_the_streak_counts_cycles_in_which_every_guard_failed():
    streak = 0
    for _ in range(DISARM_AFTER):
        streak = guard_streak(streak, [False, False])
    assert streak == DISARM_AFTER
    assert guard_streak(streak, [False, True]) == 0  # one guard answered
    assert guard_streak(5, []) == 0  # no guards: never inconclusive, never disarmed


def test_disarmed_after_the_streak_or_when_the_target_cannot_run():
    assert disarm_reason("production", None, ["a", "b"], DISARM_AFTER - 1) is None
    reason = disarm_reason("production", None, ["a", "b"], DISARM_AFTER)
    assert reason is not None and reason.startswith("every guard (a, b) failed")
    # Stable while it lasts, so the monitor warns and mails once.
    assert disarm_reason("production", None, ["a", "b"], DISARM_AFTER + 7) == reason
    assert disarm_reason("production", None, [], 99) is None
    cert = disarm_reason("production", "the client certificate /c.pem expired on X", [], 0)
    assert cert == "the target probe production cannot run: the client certificate /c.pem " \
        "expired on X"


def test_certificate_days_left():
    now = datetime(2026, 11, 26, tzinfo=UTC)
    assert certificate_days_left({"cert_not_after": isotime(now + timedelta(days=3))},
                                 now) == 3.0
    assert certificate_days_left({"cert_not_after": isotime(now - timedelta(days=1))},
                                 now) == -1.0
    assert certificate_days_left({}, now) is None
    assert certificate_days_left({"cert_not_after": "garbage"}, now) is None
