"""Few messages, always delivered: the monitor's and the Engine's events end to end, in
process, against a real HTTPS production, a real guard, an SMTP sink and a webhook receiver.

Cycles are driven one at a time (`Monitor.cycle()`); `_delivered()` does what every CLI
command does at its end (the outbox is tried), so message counts are exact.
"""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from engine.commands.check_engine import CRITICAL, OK, WARNING, evaluate
from engine.failover import Engine
from engine.monitor import Monitor
from engine.notifier import Notifier, default_warn_at
from engine.outbox import Outbox
from engine.state import StateStore, utcnow
from tests.fixtures.webhook import HOOK_KEY
from tests.support import wait_until
from tests.unit.engine.test_monitor import make_policy


def _world(tmp_path, https_server, http_server, pki, smtp_sink, **monitor):
    policy = make_policy(tmp_path, https_server, http_server, pki, smtp_sink, **monitor)
    policy.notify.pop("remind_every")
    engine = Engine(policy, StateStore(policy.state_dir))
    return Monitor(engine), engine


def _delivered(engine: Engine) -> None:
    engine.notifier.drain(10, wait=10)


def _titles(smtp_sink) -> list[str]:
    return [m["Subject"].split("] ", 1)[1].split(":")[0] for m in smtp_sink.messages]


def test_the_default_warning_level_is_half_the_threshold_never_one_probe():
    assert [default_warn_at(t) for t in (1, 2, 3, 4, 5, 30)] == [None, None, 2, 2, 3, 15]


def test_production_flapping_for_20_cycles_sends_nothing(tmp_path, https_server, http_server,
                                                         pki, smtp_sink):
    monitor, engine = _world(tmp_path, https_server, http_server, pki, smtp_sink,
                             failures_to_engage=4)
    for n in range(20):
        https_server.set_route("/health", 503 if n % 2 else 200, "flap")
        monitor.cycle()
    assert engine.record.cycles == 20 and engine.record.state in ("watching", "suspect")
    _delivered(engine)
    assert smtp_sink.messages == [] and engine.notifier.history() == []


def test_a_warned_outage_that_clears_gets_one_all_clear(tmp_path, https_server, http_server, pki,
                                                        smtp_sink):
    monitor, engine = _world(tmp_path, https_server, http_server, pki, smtp_sink,
                             failures_to_engage=6)
    https_server.set_route("/health", 503, "down")
    for _ in range(5):  # warned at 3/6, not again at 4 and 5
        monitor.cycle()
    https_server.set_route("/health", 200, "OK")
    for _ in range(3):
        monitor.cycle()
    _delivered(engine)
    assert _titles(smtp_sink) == ["WARNING", "ALL CLEAR"]
    assert smtp_sink.messages[0]["Subject"].endswith("failing (3/6)")
    # A new outage is a new episode: a new warning.
    https_server.set_route("/health", 503, "down")
    for _ in range(3):
        monitor.cycle()
    _delivered(engine)
    assert _titles(smtp_sink) == ["WARNING", "ALL CLEAR", "WARNING"]


def test_an_outage_engaged_then_restored_is_three_messages(tmp_path, https_server, http_server,
                                                           pki, smtp_sink):
    monitor, engine = _world(tmp_path, https_server, http_server, pki, smtp_sink)
    https_server.stop()
    for _ in range(5):
        monitor.cycle()
    https_server.start()
    for _ in range(3):
        monitor.cycle()
    engine.restore()
    for _ in range(3):
        monitor.cycle()
    _delivered(engine)
    assert _titles(smtp_sink) == ["WARNING", "ENGAGED", "RESTORED"]
    restored = smtp_sink.messages[2].get_content()
    assert "restore step 1 (lock)" in restored and "Timeline:" in restored
    # Every event is logged, including those no channel gets by default.
    assert [e["kind"] for e in engine.notifier.history()] == [
        "outage_warning", "engage_started", "engaged", "production_back", "restoring",
        "restored"]


def test_a_sink_down_for_three_cycles_gets_every_message_once_without_a_new_event(
        tmp_path, https_server, http_server, pki, smtp_sink):
    monitor, engine = _world(tmp_path, https_server, http_server, pki, smtp_sink)
    smtp_sink.stop()
    https_server.stop()
    for _ in range(3):  # warning at 2/3, engaged at 3/3: both wait in the outbox
        monitor.cycle()
    _delivered(engine)  # a CLI command's retry, while the relay is still down
    assert engine.record.state == "engaged"
    stats = Outbox(engine.policy.state_dir).stats()
    assert stats.depth == 2 and stats.by_channel == {"email": 2}
    monitor.cycle()  # a fourth cycle (relay still down) rewrites the metrics file
    metrics = (engine.policy.state_dir / "metrics.prom").read_text()
    assert 'failover_engine_outbox_depth{policy="mon"} 2' in metrics
    assert 'failover_engine_outbox_undeliverable_critical{policy="mon"} 0' in metrics
    logged = len(engine.notifier.history())
    smtp_sink.start()
    # The monitor's own schedule delivers them, with no new event to push them out.
    stop = engine.stop
    engine.notifier.start(stop)
    try:
        wait_until(lambda: Outbox(engine.policy.state_dir).stats().depth == 0, timeout=90,
                   what="the outbox emptied by the background deliverer")
    finally:
        stop.set()
    _delivered(engine)
    assert _titles(smtp_sink) == ["WARNING", "ENGAGED"]
    assert len(engine.notifier.history()) == logged


def test_auto_engage_off_asks_for_a_decision_once(tmp_path, https_server, http_server, pki,
                                                  smtp_sink):
    monitor, engine = _world(tmp_path, https_server, http_server, pki, smtp_sink,
                             auto_engage=False)
    https_server.stop()
    for _ in range(8):
        monitor.cycle()
    _delivered(engine)
    assert engine.record.state == "suspect"
    assert _titles(smtp_sink) == ["WARNING", "MANUAL DECISION NEEDED"]
    body = smtp_sink.messages[1].get_content()
    assert "auto_engage: false" in body and "engage --now" in body


def test_a_hanging_channel_never_blocks_an_engage(tmp_path, https_server, http_server, pki,
                                                  webhook):
    policy = make_policy(tmp_path, https_server, http_server, pki)
    key = tmp_path / "hook.key"
    key.write_bytes(HOOK_KEY)
    key.chmod(0o600)
    policy = dataclasses.replace(policy, notify={
        "webhook": {"url": webhook.url, "secret": "hook", "timeout": "60s"}})
    webhook.hang.set()  # accepts the request, never answers
    engine = Engine(policy, StateStore(policy.state_dir))
    engine.notifier._secret = lambda name: key
    engine.engage(manual=True)
    assert engine.record.state == "engaged"
    wait_until(webhook.hung.is_set, what="the delivery reaching the hanging receiver")
    (item,), _ = Outbox(policy.state_dir).items()
    # The engage finished while the delivery was still waiting for an answer: no attempt
    # has failed yet, and the receiver answered nothing.
    assert item.event.kind == "engaged" and item.attempts == 0 and webhook.events == []


def test_check_engine_warns_on_a_waiting_event_and_is_critical_for_an_undelivered_abort(
        tmp_path, https_server, http_server, pki, smtp_sink):
    monitor, engine = _world(tmp_path, https_server, http_server, pki, smtp_sink)
    monitor.cycle()
    smtp_sink.stop()
    engine.notifier.emit(engine.notifier.engine_event(
        "outage_warning", engine.record, key="x", headline="h", summary="s"))
    outbox = Outbox(engine.policy.state_dir)
    state = StateStore(engine.policy.state_dir).load()
    now = utcnow()
    code, line = evaluate(engine.policy, state, False, now, cert_warning_days=0,
                          outbox=outbox.stats(now))
    assert code == OK, line  # queued a moment ago
    later = now + timedelta(minutes=11)
    code, line = evaluate(engine.policy, StateStore(engine.policy.state_dir).load(), False,
                          now, cert_warning_days=0, outbox=outbox.stats(later))
    assert code == WARNING and "1 event(s) wait in the outbox, the oldest for 11m" in line
    engine.notifier.emit(engine.notifier.engine_event(
        "aborted", engine.record, key="y", headline="h", summary="s"))
    _delivered(engine)  # the relay is down: the aborted event fails once
    code, line = evaluate(engine.policy, StateStore(engine.policy.state_dir).load(), False,
                          now, cert_warning_days=0, outbox=outbox.stats(now))
    assert code == CRITICAL and "the aborted event cannot be delivered by email" in line


def test_events_are_emitted_once_per_id(tmp_path, https_server, http_server, pki, smtp_sink):
    monitor, engine = _world(tmp_path, https_server, http_server, pki, smtp_sink)
    notifier: Notifier = engine.notifier
    event = notifier.engine_event("test", engine.record, key="same", headline="h", summary="s")
    assert notifier.emit(event) is True
    assert notifier.emit(event) is False
    _delivered(engine)
    assert len(smtp_sink.messages) == 1


def test_no_notify_block_means_no_outbox(tmp_path: Path, https_server, http_server, pki):
    policy = make_policy(tmp_path, https_server, http_server, pki)
    engine = Engine(policy, StateStore(policy.state_dir))
    engine.engage(manual=True)
    assert Outbox(policy.state_dir).stats().depth == 0


def test_an_engaged_event_lost_to_a_crash_is_sent_at_the_next_start_once(
        tmp_path, https_server, http_server, pki, smtp_sink):
    policy = make_policy(tmp_path, https_server, http_server, pki, smtp_sink)
    policy.notify.pop("remind_every")
    # A crash right after the state file said engaged, before the outbox heard of it.
    crashed = Engine(policy, StateStore(policy.state_dir), send_mail=False)
    crashed.engage(manual=True)
    assert crashed.notifier.history() == []
    for _ in range(2):  # two restarts: the event goes out once
        engine = Engine(policy, StateStore(policy.state_dir))
        Monitor(engine).run_forever(max_cycles=1)
        engine.stop.set()
        _delivered(engine)
    assert _titles(smtp_sink) == ["ENGAGED"]
    assert "engage step 1 (lock)" in smtp_sink.messages[0].get_content()
