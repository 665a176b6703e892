"""engine.statuslog: both log styles of REFERENCE §7, timezone-aware times, durable outcomes."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.statuslog import (
    StatusLogError,
    format_outcome,
    parse_lines,
    parse_time,
    read_status_log,
    write_outcome,
)

NOW = datetime(2023, 1, 1, 12, 0, tzinfo=UTC)

ORACLE_RECENT = [
    "2023-01-01T08:40:01+0000",
    "2023-01-01T08:41:01+0000 INFO: completed ok",
    "2023-01-01T09:40:01+0000",
    "An Error",
    "2023-01-01T11:40:01+0000",
    "2023-01-01T11:41:01+0000 INFO: completed ok",
    "2023-01-01T11:50:01+0000",
    "Yet another Error",
]

MARIADB = [
    "2023-01-01T09:17:02+0000 INFO: completed ok",
    "2023-01-01T10:17:02+0000 ERROR: mysql returned 1: ERROR 1064 (42000) at line 3",
    "2023-01-01T11:17:03+0000 INFO: completed ok",
    "2023-01-01T11:30:00+0000 DEBUG: fetching dump",
    "2023-01-01T11:31:00+0000 ERROR: scp failed",
]


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("2023-01-01T11:41:01+0000", datetime(2023, 1, 1, 11, 41, 1, tzinfo=UTC)),
        ("2023-01-01T11:41:01Z", datetime(2023, 1, 1, 11, 41, 1, tzinfo=UTC)),
        ("2023-01-01T12:41:01+0100", datetime(2023, 1, 1, 11, 41, 1, tzinfo=UTC)),
        ("2023-01-01T06:41:01-05:00", datetime(2023, 1, 1, 11, 41, 1, tzinfo=UTC)),
        ("2023-01-01T11:41:01", datetime(2023, 1, 1, 11, 41, 1, tzinfo=UTC)),
        ("2023-01-01T11:41:01.250Z", datetime(2023, 1, 1, 11, 41, 1, 250000, tzinfo=UTC)),
    ],
)
def test_parse_time_is_timezone_aware(token: str, expected: datetime) -> None:
    parsed = parse_time(token)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is not None


@pytest.mark.parametrize("token", ["An", "2023-01-01", "2023-13-01T00:00:00Z", "completed", ""])
def test_parse_time_rejects_non_timestamps(token: str) -> None:
    assert parse_time(token) is None


def test_oracle_style_last_success_and_last_failure() -> None:
    log = parse_lines(ORACLE_RECENT)
    assert log.last_success_time == datetime(2023, 1, 1, 11, 41, 1, tzinfo=UTC)
    assert log.last_success is not None and log.last_success.line_no == 6
    assert log.last_outcome is not None and not log.last_outcome.ok
    assert log.last_outcome.text == "Yet another Error"
    assert log.last_outcome.time == datetime(2023, 1, 1, 11, 50, 1, tzinfo=UTC)
    assert log.success_age(NOW) == pytest.approx(18 * 60 + 59)


def test_oracle_bare_completed_ok_takes_its_run_time() -> None:
    log = parse_lines(["2023-01-01T10:00:00+0000", "completed ok"])
    assert log.last_success_time == datetime(2023, 1, 1, 10, 0, tzinfo=UTC)
    assert log.last_outcome is not None and log.last_outcome.ok


def test_oracle_header_with_date1_output_dates_a_bare_success() -> None:
    header = "==============Updating Log Sun Jan  1 10:05:00 UTC 2023 ================="
    log = parse_lines([header, "completed ok"])
    assert log.last_success_time == datetime(2023, 1, 1, 10, 5, tzinfo=UTC)


def test_undated_bare_success_as_last_line_uses_the_file_mtime() -> None:
    mtime = datetime(2023, 1, 1, 11, 0, tzinfo=UTC)
    log = parse_lines(["==== Updating Log Sun Jan  1 10:05:00 CET 2023 ====", "completed ok"],
                      fallback_time=mtime)
    assert log.last_success_time == mtime
    undated = parse_lines(["some error", "completed ok", "later error"], fallback_time=mtime)
    assert undated.last_success is not None and undated.last_success_time is None


def test_mariadb_style() -> None:
    log = parse_lines(MARIADB)
    assert log.last_success_time == datetime(2023, 1, 1, 11, 17, 3, tzinfo=UTC)
    assert log.last_outcome is not None and not log.last_outcome.ok
    assert "scp failed" in log.last_outcome.text


def test_error_line_quoting_success_words_is_not_a_success() -> None:
    log = parse_lines(["2023-01-01T11:00:00+0000 ERROR: previous run completed ok but this failed"])
    assert log.last_success is None


def test_offsets_are_compared_as_instants() -> None:
    # 12:30+0100 is 11:30 UTC: the later line by position, and 30 minutes old at NOW.
    log = parse_lines(["2023-01-01T11:00:00Z INFO: completed ok",
                       "2023-01-01T12:30:00+0100 INFO: completed ok"])
    assert log.success_age(NOW) == 1800


def test_open_run_is_reported() -> None:
    log = parse_lines(["2023-01-01T10:00:00+0000 INFO: completed ok", "2023-01-01T11:00:00+0000"])
    assert log.run_open
    assert log.last_outcome is not None and log.last_outcome.ok


def test_empty_log_has_no_success() -> None:
    log = parse_lines([])
    assert log.last_success is None and log.last_outcome is None and log.success_age(NOW) is None


def test_read_missing_log_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(StatusLogError, match="import.log does not exist"):
        read_status_log(tmp_path / "import.log")


def test_read_a_directory_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StatusLogError, match="is a directory"):
        read_status_log(tmp_path)


def test_format_outcome_exact_format() -> None:
    when = datetime(2023, 1, 1, 12, 30, 5, tzinfo=timezone(timedelta(hours=1)))
    assert format_outcome(True, now=when) == "2023-01-01T11:30:05+0000 INFO: completed ok"
    assert format_outcome(False, "scp failed\n  exit 1", now=when) == (
        "2023-01-01T11:30:05+0000 ERROR: scp failed | exit 1"
    )
    assert "completed ok" not in format_outcome(False, "not completed ok", now=when)
    assert format_outcome(False, now=when).endswith("ERROR: failed")
    # The original check parses exactly this format.
    stamp = format_outcome(True, now=when).split(" ")[0]
    assert datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S+0000") == datetime(2023, 1, 1, 11, 30, 5)


def test_write_outcome_appends_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "import.log"
    path.write_text("2023-01-01T08:00:00+0000\nold error\n")
    write_outcome(path, True, now=datetime(2023, 1, 1, 9, 0, tzinfo=UTC))
    later = datetime(2023, 1, 1, 10, 0, tzinfo=UTC)
    write_outcome(path, False, "fetch: host key changed", now=later)
    lines = path.read_text().splitlines()
    assert lines[2:] == [
        "2023-01-01T09:00:00+0000 INFO: completed ok",
        "2023-01-01T10:00:00+0000 ERROR: fetch: host key changed",
    ]
    log = read_status_log(path)
    assert log.last_success_time == datetime(2023, 1, 1, 9, 0, tzinfo=UTC)
    assert log.last_outcome is not None and not log.last_outcome.ok


def test_write_outcome_to_missing_directory_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StatusLogError, match="cannot append to status log .*nodir"):
        write_outcome(tmp_path / "nodir" / "import.log", True)
