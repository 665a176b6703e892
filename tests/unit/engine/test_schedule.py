"""engine.schedule: cron lines as Debian's cron reads them, and their next run."""
from __future__ import annotations

import datetime as dt

import pytest

from engine.schedule import next_run, schedule_problem


@pytest.mark.parametrize("text", [
    "17 * * * *", "0-59/15 1,2 * * *", "5 4 * * sun", "0 0 1 jan *", "0 0 * * 7",
    "*/5 * * * *", "0 0 29 2 *", "@hourly", "@daily", "@reboot", "17  3 * * *",
])
def test_cron_accepts(text: str) -> None:
    assert schedule_problem(text) is None


@pytest.mark.parametrize(("text", "words"), [
    ("99 * * * *", "not a valid cron schedule"),
    ("banana * * * *", "field 1 (minute) 'banana'"),
    ("x x x x x", "field 1 (minute) 'x'"),
    ("0 0 30 2 *", "never runs"),
    ("* * * * * *", "has 6 fields"),
    ("* * * *", "has 4 fields"),
    ("0 0 L * *", "field 3 (day of month)"),
    ("0 0 * * 1#2", "field 5 (day of week)"),
    ("0 0 * jan-mar *", "field 4 (month)"),
    ("*/0 * * * *", "not a valid cron schedule"),
    ("17 * * * *\n", "one line"),
    ("@fortnightly", "not a cron nickname"),
    ("", "has 0 fields"),
    (42, "is a string"),
])
def test_cron_refuses(text: object, words: str) -> None:
    problem = schedule_problem(text)
    assert problem is not None and words in problem


def test_next_run_is_after_now_and_on_the_minute() -> None:
    now = dt.datetime(2026, 3, 1, 12, 0, 30, tzinfo=dt.UTC)
    found = next_run("17 * * * *", now)
    assert found is not None and found > now
    assert found.minute == 17 or found.astimezone().minute == 17
    assert found - now <= dt.timedelta(hours=1)
    assert next_run("@reboot", now) is None
    assert next_run("0 0 30 2 *", now) is None
