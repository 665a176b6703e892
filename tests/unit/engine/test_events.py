"""The event schema: JSON round trip, idempotency ids, the one subject and body style."""
from __future__ import annotations

import json

from engine.events import (
    EVENT_FORMAT,
    Change,
    Event,
    Kind,
    body,
    event_id,
    make_event,
    subject,
    target_name,
)


def _event(**extra) -> Event:
    fields = dict(policy="gocdb", key="2026-11-30T06:00:00+00:00", state="engaged",
                  time="2026-11-30T06:01:00+00:00", headline="goc.egi.eu → standby",
                  summary="The failover is engaged.", host="standby1",
                  counts={"failures": "30/30", "down since": "2026-11-30T05:50:00+00:00"},
                  changes=[Change("engage step 3 (nsupdate)", "goc.stfc.ac.uk.", "standby."),
                           Change("engage step 2 (disable_cron): parked import")],
                  next_steps=["Check the standby.", "Restore later."],
                  commands=["failover-engine --policy /etc/gocdb.yaml restore"],
                  timeline=[{"time": "2026-11-30T05:55:00+00:00", "text": "WARNING"}])
    fields.update(extra)
    return make_event(Kind.ENGAGED, **fields)


def test_json_round_trip_and_stable_fields():
    event = _event()
    data = json.loads(event.to_json())
    assert data["format"] == EVENT_FORMAT and data["kind"] == "engaged"
    assert data["title"] == "ENGAGED" and data["severity"] == "warning"
    assert set(data) == {"format", "kind", "title", "id", "policy", "host", "state", "time",
                         "headline", "summary", "severity", "counts", "changes",
                         "next_steps", "commands", "timeline"}
    assert data["changes"][0] == {"what": "engage step 3 (nsupdate)",
                                  "before": "goc.stfc.ac.uk.", "after": "standby."}
    assert Event.from_json(event.to_json()) == event


def test_the_idempotency_id_depends_on_policy_kind_and_episode_only():
    assert _event().id == _event(summary="other words").id == \
        event_id("gocdb", Kind.ENGAGED, "2026-11-30T06:00:00+00:00")
    assert _event(key="another episode").id != _event().id
    assert event_id("gocdb", Kind.RESTORED, "k") != event_id("gocdb", Kind.ENGAGED, "k")
    assert event_id("other", Kind.ENGAGED, "k") != event_id("gocdb", Kind.ENGAGED, "k")


def test_one_subject_style():
    assert subject(_event()) == "[failover-engine gocdb@standby1] ENGAGED: goc.egi.eu → standby"
    warning = make_event(Kind.OUTAGE_WARNING, policy="gocdb", key="k", state="suspect",
                         time="t", headline="goc.egi.eu failing (15/30)", summary="s",
                         host="standby1")
    assert subject(warning) == \
        "[failover-engine gocdb@standby1] WARNING: goc.egi.eu failing (15/30)"


def test_the_body_has_the_timeline_the_changes_and_the_next_steps_in_order():
    text = body(_event())
    order = ["ENGAGED: goc.egi.eu → standby", "The failover is engaged.", "Timeline:",
             "2026-11-30T05:55:00+00:00  WARNING", "Changes:",
             "  - engage step 3 (nsupdate): goc.stfc.ac.uk. → standby.",
             "  - engage step 2 (disable_cron): parked import", "Next steps:",
             "  - Check the standby.", "Commands:",
             "  failover-engine --policy /etc/gocdb.yaml restore", "policy:   gocdb",
             "host:     standby1", "state:    engaged", "failures: 30/30",
             f"event:    engaged {_event().id}"]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions)


def test_the_target_is_named_after_its_url_host():
    assert target_name({"url": "https://goc.egi.eu/portal/health"}, "production") == "goc.egi.eu"
    assert target_name({"host": "db.example.org", "port": 3306}, "production") == \
        "db.example.org"
    assert target_name({}, "production") == "production"
