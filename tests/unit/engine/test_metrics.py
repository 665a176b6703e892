"""The metrics file: parsed back as Prometheus text format, values match the state."""
from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from engine.metrics import escape_label, format_value, render_metrics, write_metrics
from engine.state import EngineState, isotime
from engine.states import State
from tests.unit.engine.test_render import make_policy

NOW = datetime(2026, 11, 26, 7, 0, 0, tzinfo=UTC)
_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\}'
    r' (?P<value>\S+)$'
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse(text: str) -> dict[str, dict]:
    """name → {"type", "help", "samples": {frozenset(labels): value}}; asserts the format."""
    assert text.endswith("\n")
    families: dict[str, dict] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            _, _, name, help_text = line.split(" ", 3)
            assert name not in families, f"{name} declared twice"
            families[name] = {"help": help_text, "samples": {}}
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in families and "type" not in families[name], "HELP must come first"
            assert kind in {"gauge", "counter"}
            families[name]["type"] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name = match["name"]
            assert "type" in families.get(name, {}), f"sample before HELP/TYPE: {line}"
            labels = frozenset(_LABEL.findall(match["labels"]))
            assert labels not in families[name]["samples"], f"duplicate sample {line}"
            families[name]["samples"][labels] = float(match["value"])
    return families


def value(families, name, **labels):
    key = frozenset({"policy": "gocdb", **labels}.items())
    return families["failover_engine_" + name]["samples"].get(key)


def scripted_state() -> EngineState:
    """After: two failed cycles, production probe down, internet up, one engage, one restore."""
    return EngineState(
        state="suspect", failures=2, cycles=40,
        last_cycle=isotime(NOW - timedelta(seconds=90)),
        last_probes={"production": {"ok": False, "latency": 30.0, "detail": "timeout"},
                     "internet": {"ok": True, "latency": 0.125}},
        hold_down_until=isotime(NOW + timedelta(minutes=20)),
        counts={"engages": 1, "restores": 1},
    )


def test_every_line_parses_and_values_match_the_state(tmp_path):
    jobs = {"import": {"ok": True, "last_success": isotime(NOW - timedelta(hours=1)),
                       "data_completed": isotime(NOW - timedelta(hours=2))},
            "archive": {"ok": False, "last_error": "boom"}}
    families = parse(render_metrics(make_policy(tmp_path), scripted_state(), jobs, NOW))
    assert families["failover_engine_state"]["type"] == "gauge"
    assert {value(families, "state", state=s) for s in State if s != "suspect"} == {0.0}
    assert value(families, "state", state="suspect") == 1.0
    assert value(families, "consecutive_failures") == 2
    assert value(families, "failures_to_engage") == 30
    assert value(families, "probe_success", probe="production") == 0
    assert value(families, "probe_success", probe="internet") == 1
    assert value(families, "probe_latency_seconds", probe="production") == 30.0
    assert value(families, "probe_latency_seconds", probe="internet") == 0.125
    assert value(families, "job_last_success_timestamp_seconds", job="import") == (
        NOW - timedelta(hours=1)).timestamp()
    assert value(families, "job_data_age_seconds", job="import") == 7200
    assert value(families, "job_last_run_ok", job="archive") == 0
    assert value(families, "job_last_success_timestamp_seconds", job="archive") is None
    assert families["failover_engine_engages_total"]["type"] == "counter"
    assert value(families, "engages_total") == 1 and value(families, "restores_total") == 1
    assert value(families, "hold_down_active") == 1
    assert value(families, "aborted") == 0 and value(families, "paused") == 0
    assert value(families, "last_cycle_timestamp_seconds") == (
        NOW - timedelta(seconds=90)).timestamp()


def test_fresh_state_leaves_unknowns_out(tmp_path):
    families = parse(render_metrics(make_policy(tmp_path), EngineState(), {}, NOW))
    assert value(families, "state", state="watching") == 1
    assert families["failover_engine_probe_success"]["samples"] == {}
    assert families["failover_engine_last_cycle_timestamp_seconds"]["samples"] == {}
    assert families["failover_engine_job_data_age_seconds"]["samples"] == {}
    assert value(families, "hold_down_active") == 0
    assert value(families, "engages_total") == 0


def test_aborted_paused_and_expired_hold_down(tmp_path):
    policy = make_policy(tmp_path)
    policy.state_dir.mkdir()
    (policy.state_dir / "paused").write_text("alice: patching\n")
    state = EngineState(state="aborted", aborted_reason="nsupdate refused",
                        hold_down_until=isotime(NOW - timedelta(seconds=1)))
    families = parse(render_metrics(policy, state, {}, NOW))
    assert value(families, "aborted") == 1 and value(families, "state", state="aborted") == 1
    assert value(families, "paused") == 1
    assert value(families, "hold_down_active") == 0


def test_label_values_are_escaped(tmp_path):
    state = EngineState(last_probes={'we"ird\\probe\nx': {"ok": True}})
    families = parse(render_metrics(make_policy(tmp_path), state, {}, NOW))
    key = frozenset({"policy": "gocdb", "probe": 'we\\"ird\\\\probe\\nx'}.items())
    assert families["failover_engine_probe_success"]["samples"][key] == 1
    assert escape_label('a"b') == 'a\\"b'


def test_value_formatting():
    assert format_value(3.0) == "3" and format_value(0.125) == "0.125"
    assert format_value(math.nan) == "NaN" and format_value(-math.inf) == "-Inf"
    assert format_value(1764140400.5) == "1764140400.5"


def test_write_metrics_is_world_readable_and_replaces(tmp_path):
    (tmp_path / "textfile").mkdir()
    path = tmp_path / "textfile" / "metrics.prom"
    write_metrics(path, "a 1\n")
    write_metrics(path, "a 2\n")
    assert path.read_text() == "a 2\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["metrics.prom"]  # no temp files left


def test_refresh_metrics_reads_state_and_job_records(tmp_path):
    from engine.metrics import metrics_path, refresh_metrics
    from engine.state import StateStore

    policy = make_policy(tmp_path)
    StateStore(policy.state_dir).save(EngineState(state="engaged", counts={"engages": 3,
                                                                           "restores": 2}))
    (policy.state_dir / "jobs").mkdir()
    (policy.state_dir / "jobs" / "import.json").write_text(
        '{"ok": true, "last_success": "2026-11-26T06:00:00+00:00"}')
    path = refresh_metrics(policy, now=NOW)
    assert path == metrics_path(policy) == policy.state_dir / "metrics.prom"
    families = parse(path.read_text())
    assert value(families, "state", state="engaged") == 1
    assert value(families, "engages_total") == 3
    assert value(families, "job_data_age_seconds", job="import") == 3600
