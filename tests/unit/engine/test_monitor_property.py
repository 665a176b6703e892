"""Property: over random sequences of cycle outcomes, the real Monitor and Engine engage
exactly once, exactly at the first cycle where the consecutive or window rule is met, and
never on an inconclusive cycle. Probe results are scripted (they are the test's input);
everything downstream — tally, machine, runner, state file — is the real code."""
from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from actions.base import ProbeResult
from engine.failover import Engine
from engine.monitor import Monitor
from engine.policy import MonitorSpec, Policy, ProbeSpec, Step
from tests.unit.engine.test_tally import _first_engage_expected

OUTCOMES = {  # cycle → (target ok, guard ok)
    "ok": (True, True),
    "failed": (False, True),
    "inconclusive": (False, False),
}


@settings(max_examples=120, deadline=None)
@given(
    cycles=st.lists(st.sampled_from(sorted(OUTCOMES)), max_size=40),
    n=st.integers(1, 6),
    window=st.one_of(st.none(), st.tuples(st.integers(1, 5), st.integers(1, 8))),
)
def test_monitor_engages_once_at_the_first_qualifying_cycle(cycles, n, window):
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        probes = {name: ProbeSpec(name, "tcp", {"host": "127.0.0.1", "port": 9})
                  for name in ("production", "internet")}
        policy = Policy(
            path=base / "p.yaml", name="prop", state_dir=base / "state", probes=probes,
            monitor=MonitorSpec(target="production", guards=["internet"], interval=1,
                                failures_to_engage=n, window=window),
            engage=[Step("lock", {"state": "present"}, where="engage[0]")], restore=[])
        monitor = Monitor(Engine(policy))
        current = {"cycle": "ok"}

        def scripted(name: str) -> ProbeResult:
            target_ok, guard_ok = OUTCOMES[current["cycle"]]
            return ProbeResult(target_ok if name == "production" else guard_ok, "scripted", 0.0)

        monitor._check = scripted  # type: ignore[method-assign]
        engaged_at = []
        for index, cycle in enumerate(cycles):
            current["cycle"] = cycle
            before = monitor.engine.record.counts["engages"]
            monitor.cycle()
            if monitor.engine.record.counts["engages"] > before:
                engaged_at.append(index)
        expected = _first_engage_expected(cycles, n, *(window or (None, None)))
        assert engaged_at == ([] if expected is None else [expected])
        if engaged_at:
            assert cycles[engaged_at[0]] == "failed"
            assert (base / "state" / "engage.lock").exists()
            assert monitor.engine.record.state == "engaged"
