"""Clock jumps (issue 10 case 8): a backward jump made `check engine` say OK with no
monitor running, `check dump-age` say OK "0ms ago" for a success stamped in the future, and
stretched a 1-minute hold-down to a day. Ages and the hold-down now run on the monotonic
clock plus the boot id (engine/clock.py); a future time with no such mark is clock skew.

The clock jump is simulated by writing wall times a day ahead, as a clock set back a day
would leave them; no test reads or sets the real time of day.
"""
from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine import clock
from engine.commands.check_dump_age import WARNING as DUMP_WARNING
from engine.commands.check_dump_age import run as dump_age
from engine.commands.check_engine import CRITICAL, OK, WARNING, evaluate
from engine.failover import Engine
from engine.policy import MonitorSpec, Policy, Step
from engine.state import EngineState, isotime
from engine.states import State

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _policy(tmp_path: Path, hold_down: float = 60.0) -> Policy:
    return Policy(path=tmp_path / "p.yaml", name="clock", state_dir=tmp_path / "state",
                  monitor=MonitorSpec(target="production", interval=60, failures_to_engage=3,
                                      hold_down=hold_down),
                  engage=[Step("lock", {"state": "present"}, where="engage[0]")], restore=[])


def test_elapsed_prefers_the_monotonic_mark_of_this_boot() -> None:
    marks: dict = {}
    clock.mark(marks, "last_cycle", offset=-600)  # taken ten minutes ago
    found = clock.elapsed(marks, "last_cycle", NOW + DAY, NOW)  # wall says: in the future
    assert found.monotonic and not found.skew
    assert found.seconds is not None and found.seconds >= 600


def test_a_mark_from_another_boot_falls_back_to_the_wall_clock() -> None:
    marks = {"last_cycle": {"mono": time.monotonic(), "boot": "another-boot"}}
    found = clock.elapsed(marks, "last_cycle", NOW - timedelta(minutes=5), NOW)
    assert not found.monotonic and found.seconds == 300
    assert clock.elapsed(marks, "last_cycle", NOW + DAY, NOW).skew


def test_check_engine_is_critical_when_the_monitor_stopped_before_a_backward_jump(
        tmp_path: Path) -> None:
    """The last cycle's wall stamp lies a day ahead (the clock was set back); its monotonic
    mark says it ran 10 intervals ago: the monitor is dead, and the check says so."""
    state = EngineState(state=State.WATCHING, last_cycle=isotime(NOW + DAY))
    clock.mark(state.monotonic, "last_cycle", offset=-600)
    code, line = evaluate(_policy(tmp_path), state, False, NOW)
    assert code == CRITICAL, line
    assert "no probe cycle for" in line


def test_check_engine_future_stamp_without_a_mark_is_clock_skew(tmp_path: Path) -> None:
    state = EngineState(state=State.WATCHING, last_cycle=isotime(NOW + DAY))
    code, line = evaluate(_policy(tmp_path), state, False, NOW)
    assert code == WARNING and "clock skew" in line, line
    assert code != OK


def test_check_engine_recent_cycle_is_ok(tmp_path: Path) -> None:
    state = EngineState(state=State.WATCHING, last_cycle=isotime(NOW))
    clock.mark(state.monotonic, "last_cycle", offset=-30)
    code, line = evaluate(_policy(tmp_path), state, False, NOW)
    assert code == OK, line


def test_hold_down_ends_by_the_monotonic_clock(tmp_path: Path) -> None:
    """A 1-minute hold-down whose wall end lies a day ahead (clock set back after the
    restore) is over once a minute has passed on the monotonic clock."""
    engine = Engine(_policy(tmp_path), send_mail=False)
    engine.record.hold_down_until = isotime(datetime.now(UTC) + DAY)
    engine.record.monotonic["hold_down_until"] = {"mono": time.monotonic() - 1,
                                                  "boot": clock.boot_id()}
    assert not engine.held_down()
    engine.record.monotonic["hold_down_until"]["mono"] = time.monotonic() + 60
    assert engine.held_down()


def _args(log: Path) -> argparse.Namespace:
    return argparse.Namespace(warning=None, critical=None, log=str(log), data_age=False,
                              job=None, policy=None, state_dir=None)


def test_check_dump_age_success_in_the_future_is_clock_skew(tmp_path: Path) -> None:
    log = tmp_path / "import.log"
    log.write_text(f"{(NOW + DAY).strftime('%Y-%m-%dT%H:%M:%S+0000')} INFO: completed ok\n")
    code, line = dump_age(_args(log), now=NOW)
    assert code == DUMP_WARNING, line
    assert "clock skew" in line and "in the future" in line and "0ms ago" not in line
    log.write_text(f"{(NOW - timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%S+0000')} "
                   "INFO: completed ok\n")
    code, line = dump_age(_args(log), now=NOW)
    assert code == 0 and "1h ago" in line
