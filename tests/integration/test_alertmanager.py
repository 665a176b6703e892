"""The alertmanager channel against a real prometheus-alertmanager on loopback: alerts fire
while engaged, aborted or disarmed and resolve when the condition ends."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from engine.channels.alertmanager import AlertmanagerChannel
from engine.events import Kind, make_event
from engine.state import isotime, utcnow
from tests.support import wait_until


def _event(kind: Kind, key: str):
    # Firing events a minute ago, the resolving ones now (Alertmanager compares with its clock).
    ago = 60 if kind in (Kind.ENGAGED, Kind.DISARMED, Kind.ABORTED) else 0
    return make_event(kind, policy="gocdb", key=key, state=str(kind),
                      time=isotime(utcnow() - timedelta(seconds=ago)),
                      headline="goc.egi.eu → standby", summary="s", host="standby1")


def _firing(alertmanager) -> dict[str, str]:
    return {a["labels"]["alertname"]: a["status"]["state"] for a in alertmanager.active()
            if a["labels"].get("policy") == "gocdb"}


def test_engaged_fires_and_restored_resolves(alertmanager, tmp_path: Path):
    channel = AlertmanagerChannel("alertmanager", {"url": alertmanager.url},
                                  lambda name: tmp_path)
    assert "FailoverEngaged firing" in channel.send(_event(Kind.ENGAGED, "e1"), 5.0)
    channel.send(_event(Kind.DISARMED, "d1"), 5.0)
    wait_until(lambda: set(_firing(alertmanager)) == {"FailoverEngaged", "FailoverDisarmed"},
               what="both alerts firing")
    alerts = {a["labels"]["alertname"]: a for a in alertmanager.active()}
    engaged = alerts["FailoverEngaged"]
    assert engaged["labels"] == {"alertname": "FailoverEngaged", "policy": "gocdb",
                                 "instance": "standby1", "severity": "warning"}
    assert engaged["annotations"]["summary"] == \
        "[failover-engine gocdb@standby1] ENGAGED: goc.egi.eu → standby"

    what = channel.send(_event(Kind.RESTORED, "r1"), 5.0)
    assert "FailoverEngaged resolved" in what
    wait_until(lambda: set(_firing(alertmanager)) == {"FailoverDisarmed"},
               what="the engaged alert resolved, the disarmed one still firing")
    channel.send(_event(Kind.REARMED, "a1"), 5.0)
    wait_until(lambda: _firing(alertmanager) == {}, what="every alert resolved")


def test_aborted_fires_until_reset(alertmanager, tmp_path: Path):
    channel = AlertmanagerChannel("alertmanager", {"url": alertmanager.url + "/"},
                                  lambda name: tmp_path)
    channel.send(_event(Kind.ABORTED, "x1"), 5.0)
    wait_until(lambda: _firing(alertmanager) == {"FailoverAborted": "active"},
               what="the aborted alert firing")
    channel.send(_event(Kind.RESET, "x2"), 5.0)
    wait_until(lambda: _firing(alertmanager) == {}, what="the aborted alert resolved")


def test_the_engine_fires_engaged_while_engaged_and_resolves_it_on_restore(
        alertmanager, tmp_path: Path):
    from engine.failover import Engine
    from engine.policy import MonitorSpec, Policy, ProbeSpec, Step
    from engine.state import StateStore

    policy = Policy(
        path=tmp_path / "p.yaml", name="am", state_dir=tmp_path / "state",
        monitor=MonitorSpec(target="production", guards=[], interval=1.0, failures_to_engage=3),
        probes={"production": ProbeSpec("production", "tcp",
                                        {"host": "prod.example.test", "port": 443})},
        notify={"alertmanager": {"url": alertmanager.url}},
        engage=[Step("lock", {"state": "present"}, where="engage[0]")],
        restore=[Step("lock", {"state": "absent"}, where="restore[0]")])
    engine = Engine(policy, StateStore(policy.state_dir))

    def firing() -> dict[str, str]:
        return {a["labels"]["alertname"]: a["annotations"]["summary"]
                for a in alertmanager.active() if a["labels"].get("policy") == "am"}

    engine.engage(manual=True)
    engine.notifier.drain(10, wait=10)
    wait_until(lambda: "FailoverEngaged" in firing(), what="FailoverEngaged firing")
    assert firing()["FailoverEngaged"].endswith("ENGAGED: prod.example.test → standby")
    engine.restore()
    engine.notifier.drain(10, wait=10)
    wait_until(lambda: firing() == {}, what="FailoverEngaged resolved after the restore")
