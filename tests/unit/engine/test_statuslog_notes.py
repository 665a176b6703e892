"""Status-log lines that are no run outcome: WARNING notes and the swap markers."""
from __future__ import annotations

from datetime import UTC, datetime

from engine.statuslog import (
    parse_lines,
    read_status_log,
    write_note,
    write_outcome,
    write_swap_mark,
)
from tests.support import step_context

T = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def test_a_warning_note_is_not_an_outcome(tmp_path):
    log = tmp_path / "import.log"
    write_outcome(log, True, now=T)
    line = write_note(log, "WARNING", "refused: the failover is engaged\nsecond line", now=T)
    assert line == "2026-11-30T06:00:00+0000 WARNING: refused: the failover is engaged |" \
                   " second line"
    parsed = read_status_log(log)
    assert parsed.last_outcome is not None and parsed.last_outcome.ok
    assert parsed.last_success is not None and parsed.last_success.line_no == 1


def test_a_note_never_carries_the_success_words(tmp_path):
    log = tmp_path / "import.log"
    write_outcome(log, False, "boom", now=T)
    write_note(log, "WARNING", "the new data is live (completed ok), but archive failed", now=T)
    assert "completed ok" not in log.read_text().splitlines()[-1]
    assert read_status_log(log).last_success is None


def test_a_swap_that_started_and_never_finished_is_open(tmp_path):
    log = tmp_path / "import.log"
    write_outcome(log, True, now=T)
    write_swap_mark(log, "gocdb", finished=False)
    assert read_status_log(log).open_swaps == ("gocdb",)
    write_outcome(log, False, "killed? no: an outcome alone does not close the swap", now=T)
    assert read_status_log(log).open_swaps == ("gocdb",)
    write_swap_mark(log, "gocdb", finished=True)
    write_outcome(log, True, now=T)
    parsed = read_status_log(log)
    assert parsed.open_swaps == () and parsed.last_outcome is not None
    assert parsed.last_outcome.ok


def test_markers_are_ignored_by_the_outcome_scan():
    lines = ["2026-11-30T06:00:00+0000 INFO: completed ok",
             "2026-11-30T07:00:00+0000 NOTICE: swap into db started"]
    parsed = parse_lines(lines)
    assert parsed.last_outcome is not None and parsed.last_outcome.line_no == 1
    assert parsed.open_swaps == ("db",)


def test_the_engage_gate_passes_after_a_refusal_or_a_failed_archive(tmp_path):
    """Even with require_last_ok, a WARNING note is no failed run (issue 10, case 3)."""
    from actions.check_dump_age import CheckDumpAge

    log = tmp_path / "import.log"
    write_outcome(log, True)
    write_note(log, "WARNING", "refused before the swap: the engage lock exists")
    write_outcome(log, True)
    write_note(log, "WARNING", "the new data is live, but step 2 (archive) failed: disk full")
    gate = CheckDumpAge({"status_log": str(log), "max_age": "7h", "require_last_ok": True})
    ctx = step_context(tmp_path, secret=tmp_path)
    assert gate.plan(ctx).problem is None
    write_outcome(log, False, "the import itself failed")
    assert gate.plan(ctx).problem is not None  # a real failure still stops it
