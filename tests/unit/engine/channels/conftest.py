"""Shared helpers for the channel tests: a sample event."""
from __future__ import annotations

import pytest

from engine.events import Change, Event, Kind, make_event


@pytest.fixture
def sample_event() -> Event:
    """An `engaged` event as the Engine builds one."""
    return make_event(
        Kind.ENGAGED, policy="gocdb", key="k1", state="engaged",
        time="2026-11-30T06:00:00+00:00", headline="goc.egi.eu → standby",
        summary="The failover is engaged.", counts={"failures": "3/3"},
        changes=[Change("engage step 2 (nsupdate)", "goc.stfc.ac.uk.", "standby.example.")],
        next_steps=["Restore when production is back."],
        commands=["failover-engine --policy /etc/p.yaml restore"],
        timeline=[{"time": "2026-11-30T05:59:00+00:00", "text": "warning"}], host="standby1")
