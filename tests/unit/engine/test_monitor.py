"""The monitor, in process, against a real HTTPS production, a real guard and an SMTP sink.

Cycles are driven one at a time (`Monitor.cycle()`), so the tests follow the count
exactly: readable outcome lines, inconclusive cycles holding the count, engage at the
threshold and only once, pause, hold-down, production back, reminders, requests.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.events import this_host
from engine.failover import Engine
from engine.monitor import Monitor
from engine.monitor_requests import collect_reply, has_pending, submit
from engine.paths import StatePaths, paused_flag
from engine.policy import MonitorSpec, Policy, ProbeSpec, Step
from engine.state import StateStore


def make_policy(tmp_path: Path, https_server, http_server, pki, smtp_sink=None, **monitor):
    https_server.set_route("/health", 200, "OK")
    probes = {
        "production": ProbeSpec("production", "http", {
            "url": https_server.url("/health"), "client_cert": str(pki.client.cert),
            "client_key": str(pki.client.key), "ca_file": str(pki.ca.cert), "timeout": "1s"}),
        "internet": ProbeSpec("internet", "http", {"url": http_server.url("/"), "timeout": "1s"}),
    }
    spec = dict(target="production", guards=["internet"], interval=0.05, failures_to_engage=3)
    spec.update(monitor)
    notify = None
    if smtp_sink is not None:
        notify = {"email": {"smtp": {"host": "127.0.0.1", "port": smtp_sink.port},
                            "from": "e@t.test", "to": ["a@t.test"], "subject": "t"},
                  "remind_every": "0s"}
    return Policy(path=tmp_path / "p.yaml", name="mon", state_dir=tmp_path / "state",
                  monitor=MonitorSpec(**spec), probes=probes, notify=notify,
                  engage=[Step("lock", {"state": "present"}, where="engage[0]")],
                  restore=[Step("lock", {"state": "absent"}, where="restore[0]")])


@pytest.fixture
def world(tmp_path, https_server, http_server, pki):
    def build(smtp_sink=None, **monitor):
        policy = make_policy(tmp_path, https_server, http_server, pki, smtp_sink, **monitor)
        engine = Engine(policy, StateStore(policy.state_dir))
        return Monitor(engine), engine
    return build


def test_ok_cycle_line_and_count(world):
    monitor, engine = world()
    line = monitor.cycle()
    assert line.startswith("probe production ok (") and line.endswith("guard internet ok")
    assert engine.record.state == "watching" and engine.record.failures == 0
    assert engine.record.last_probes["production"]["ok"] is True


def test_failures_count_up_and_engage_once_at_the_threshold(world, https_server):
    monitor, engine = world()
    https_server.stop()
    lines = [monitor.cycle() for _ in range(2)]
    assert lines[0].startswith("probe production failed (1/3): ")
    assert lines[1].startswith("probe production failed (2/3): ")
    assert engine.record.state == "suspect"
    metrics = (engine.policy.state_dir / "metrics.prom").read_text()
    assert "failover_engine_consecutive_failures" in metrics
    assert any(line.startswith("failover_engine_consecutive_failures") and line.endswith(" 2")
               for line in metrics.splitlines())
    assert 'failover_engine_state{policy="mon",state="suspect"} 1' in metrics
    monitor.cycle()
    assert engine.record.state == "engaged"
    assert (engine.policy.state_dir / "engage.lock").exists()
    assert engine.record.counts["engages"] == 1
    for _ in range(4):
        monitor.cycle()
    assert engine.record.state == "engaged" and engine.record.counts["engages"] == 1


def test_guard_down_makes_the_cycle_inconclusive_and_the_count_holds(world, https_server,
                                                                     http_server):
    monitor, engine = world()
    https_server.stop()
    monitor.cycle()
    monitor.cycle()
    http_server.stop()
    line = monitor.cycle()
    assert "inconclusive, every guard failed too (count holds at 2/3)" in line
    assert "guard internet failed: " in line
    for _ in range(5):
        monitor.cycle()
    assert engine.record.failures == 2 and engine.record.state == "suspect"
    http_server.start()
    monitor.cycle()
    assert engine.record.state == "engaged"


def test_success_resets_the_count(world, https_server):
    monitor, engine = world()
    https_server.stop()
    monitor.cycle()
    monitor.cycle()
    https_server.start()
    monitor.cycle()
    assert engine.record.state == "watching" and engine.record.failures == 0


def test_pause_switch_blocks_engage_and_resume_rearms(world, https_server):
    monitor, engine = world()
    paused_flag(engine.policy.state_dir).parent.mkdir(parents=True, exist_ok=True)
    paused_flag(engine.policy.state_dir).write_text("maintenance\n")
    monitor.handle_requests()
    assert engine.record.state == "paused"
    https_server.stop()
    for _ in range(5):
        monitor.cycle()
    assert engine.record.state == "paused"
    assert not (engine.policy.state_dir / "engage.lock").exists()
    paused_flag(engine.policy.state_dir).unlink()
    monitor.handle_requests()
    assert engine.record.state == "watching" and engine.record.failures == 0


def test_hold_down_blocks_a_second_automatic_engage_and_engage_now_overrides(world, https_server):
    monitor, engine = world(hold_down=3600)
    https_server.stop()
    for _ in range(3):
        monitor.cycle()
    assert engine.record.state == "engaged"
    engine.restore()
    assert engine.record.state == "watching" and engine.held_down()
    for _ in range(5):
        monitor.cycle()
    assert engine.record.state == "suspect"  # prolonged, but held down
    assert engine.record.counts["engages"] == 1
    paths = StatePaths(engine.policy.state_dir)
    request = submit(paths, "engage")
    monitor.handle_requests()
    assert engine.record.state == "engaged" and engine.record.counts["engages"] == 2
    reply = collect_reply(paths, request.request_id)
    assert reply is not None and reply.accepted and reply.state == "engaged"
    assert reply.kind == "engage" and reply.reason is None
    assert collect_reply(paths, request.request_id) is None  # collected once, then gone


def _delivered(engine):
    """Deliver what the outbox holds now (the background deliverer may be busy with it)."""
    engine.notifier.drain(10, wait=10)


def _kinds(engine):
    return [e["kind"] for e in engine.notifier.history()]


def test_production_back_is_reported_once_but_never_fails_back(world, https_server, smtp_sink):
    monitor, engine = world(smtp_sink=smtp_sink, rise=2)
    engine.policy.notify["email"]["events"] = ["production_back"]
    https_server.stop()
    for _ in range(3):
        monitor.cycle()
    assert engine.record.state == "engaged"
    https_server.start()
    monitor.cycle()
    assert not engine.record.production_back
    monitor.cycle()
    monitor.cycle()
    assert engine.record.production_back and engine.record.state == "engaged"
    _delivered(engine)
    backs = [m for m in smtp_sink.messages if "PRODUCTION BACK" in m["Subject"]]
    assert len(backs) == 1 and _kinds(engine).count("production_back") == 1


def test_no_production_back_after_a_planned_engage(world, smtp_sink):
    monitor, engine = world(smtp_sink=smtp_sink, rise=1)
    engine.policy.notify["email"]["events"] = ["production_back", "engaged"]
    engine.engage(manual=True)  # production is fine: a planned engage
    for _ in range(3):
        monitor.cycle()
    assert engine.record.production_back and engine.record.state == "engaged"
    _delivered(engine)
    subjects = [m["Subject"] for m in smtp_sink.messages]
    assert "production_back" not in _kinds(engine)
    assert len(subjects) == 1 and " ENGAGED: " in subjects[0]


def test_one_style_warning_engaged_and_reminders_no_per_probe_mail(world, https_server,
                                                                   smtp_sink):
    monitor, engine = world(smtp_sink=smtp_sink)
    https_server.stop()
    for _ in range(4):
        monitor.cycle()
    _delivered(engine)
    subjects = [m["Subject"] for m in smtp_sink.messages]
    host = this_host()
    head = f"[failover-engine mon@{host}] "
    assert all(s.startswith(head) for s in subjects), subjects
    titles = [s[len(head):].split(":")[0] for s in subjects]
    # threshold 3 → one warning at 2/3 (not at the first failed probe), then engaged with
    # its change, then the reminders (remind_every 0s); nothing for suspect or engaging.
    assert titles[:2] == ["WARNING", "ENGAGED"] and set(titles[2:]) == {"REMINDER"}
    assert subjects[0].endswith("WARNING: 127.0.0.1 failing (2/3)")
    assert subjects[1].endswith("ENGAGED: 127.0.0.1 → standby")
    body = smtp_sink.messages[1].get_content()
    for part in ("Timeline:", "Changes:", "engage step 1 (lock)", "Next steps:", "Commands:",
                 "policy:   mon", "state:    engaged", "failures: 3/3"):
        assert part in body, part
    assert "restore" in body.split("Commands:")[1]


def test_a_refused_request_is_replied_and_recorded_not_raised(world):
    monitor, engine = world()
    paths = StatePaths(engine.policy.state_dir)
    request = submit(paths, "restore")
    assert monitor._pending()
    monitor.handle_requests()
    assert engine.record.state == "watching"
    assert "request restore refused" in engine.record.last_outcome
    assert not has_pending(paths) and not monitor._pending()
    reply = collect_reply(paths, request.request_id)
    assert reply is not None and not reply.accepted and reply.state == "watching"
    assert "cannot restore from state watching" in reply.reason


def test_requests_are_answered_in_order_and_a_bad_one_is_refused(world):
    monitor, engine = world()
    paths = StatePaths(engine.policy.state_dir)
    first = submit(paths, "engage")
    second = submit(paths, "restore")
    bad_id = "0-engage-bad"
    paths.request_file(bad_id).write_text("{not json")
    monitor.handle_requests()
    assert engine.record.counts == {"engages": 1, "restores": 1}
    assert engine.record.state == "watching"
    assert collect_reply(paths, first.request_id).state == "engaged"
    assert collect_reply(paths, second.request_id).state == "watching"
    bad = collect_reply(paths, bad_id)
    assert bad is not None and not bad.accepted and "bad request: not JSON" in bad.reason


def test_run_forever_stops_on_the_event_and_keeps_the_schedule(world):
    monitor, engine = world()
    monitor.run_forever(max_cycles=5)
    assert engine.record.cycles == 5
    saved = StateStore(engine.policy.state_dir).load()
    assert saved.cycles == 5 and saved.last_cycle


def test_a_notify_step_and_the_engaged_event_are_two_different_mails(
        tmp_path, https_server, http_server, pki, smtp_sink):
    policy = make_policy(tmp_path, https_server, http_server, pki, smtp_sink)
    policy.engage.insert(0, Step("notify", {"message": "engaging now"}, on_error="continue",
                                 where="engage[0]"))
    engine = Engine(policy, StateStore(policy.state_dir))
    engine.engage(manual=True)
    _delivered(engine)
    subjects = [m["Subject"] for m in smtp_sink.messages]
    assert sorted(s.split("] ", 1)[1] if s.startswith("[failover") else s for s in subjects) \
        == ["ENGAGED: 127.0.0.1 → standby", "t: engaging now"]


def test_schedule_catches_up_small_overruns_and_skips_after_a_long_stall():
    from engine.monitor import CATCH_UP, next_slot

    # On time: the next slot.
    assert next_slot(4, 0.0, 1.0, 4.2) == 5
    # Overran a little (slot 5 is already due): still slot 5, started at once.
    assert next_slot(4, 0.0, 1.0, 5.5) == 5
    # A long stall: skip to the slot after now, no burst of missed cycles.
    stalled = 5 + CATCH_UP + 2.5
    assert next_slot(4, 0.0, 1.0, stalled) == int(stalled) + 1


def test_a_request_the_monitor_fails_on_still_gets_a_reply(world, monkeypatch):
    monitor, engine = world()
    paths = StatePaths(engine.policy.state_dir)
    request = submit(paths, "reset")

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "reset", broken)
    with pytest.raises(RuntimeError, match="boom"):
        monitor.handle_requests()
    reply = collect_reply(paths, request.request_id)
    assert reply is not None and not reply.accepted
    assert "the monitor failed while acting on it (RuntimeError: boom)" in reply.reason
