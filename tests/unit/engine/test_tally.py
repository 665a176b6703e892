"""Tally: consecutive and window rules, inconclusive cycles hold the count, rise."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tally import Cycle, Tally, classify


def test_classify_target_ok_wins_even_if_guards_fail():
    assert classify(True, [False, False]) is Cycle.OK


def test_classify_all_guards_failed_is_inconclusive():
    assert classify(False, [False, False]) is Cycle.INCONCLUSIVE


def test_classify_one_guard_ok_is_a_failure():
    assert classify(False, [False, True]) is Cycle.FAILED


def test_classify_without_guards_a_failure_counts():
    assert classify(False, []) is Cycle.FAILED


def test_inconclusive_holds_the_count():
    tally = Tally(3)
    tally.record(Cycle.FAILED)
    tally.record(Cycle.FAILED)
    tally.record(Cycle.INCONCLUSIVE)
    assert tally.failures == 2 and not tally.prolonged
    tally.record(Cycle.FAILED)
    assert tally.prolonged


def test_success_resets_the_count():
    tally = Tally(2)
    tally.record(Cycle.FAILED)
    tally.record(Cycle.OK)
    tally.record(Cycle.FAILED)
    assert tally.failures == 1 and not tally.prolonged


def test_window_catches_flapping():
    tally = Tally(10, window_failures=3, window_cycles=5)
    for cycle in [Cycle.FAILED, Cycle.OK, Cycle.FAILED, Cycle.OK]:
        tally.record(cycle)
        assert not tally.prolonged
    tally.record(Cycle.FAILED)
    assert tally.prolonged and tally.failures == 1


def test_rise_needs_successes_in_a_row():
    tally = Tally(3, rise=2)
    tally.record(Cycle.OK)
    assert not tally.back
    tally.record(Cycle.INCONCLUSIVE)
    tally.record(Cycle.OK)
    assert tally.back
    tally.record(Cycle.FAILED)
    assert not tally.back


def _first_engage_expected(cycles, n, wx, wy):
    """Independent reference: index of the first cycle where either rule holds."""
    conclusive: list[bool] = []
    run = 0
    for i, c in enumerate(cycles):
        if c == "inconclusive":
            continue
        failed = c == "failed"
        conclusive.append(failed)
        run = run + 1 if failed else 0
        if run >= n:
            return i
        if wx and sum(conclusive[-wy:]) >= wx:
            return i
    return None


@settings(max_examples=400, deadline=None)
@given(
    cycles=st.lists(st.sampled_from(["ok", "failed", "inconclusive"]), max_size=60),
    n=st.integers(1, 8),
    window=st.one_of(st.none(), st.tuples(st.integers(1, 6), st.integers(1, 10))),
)
def test_engage_happens_exactly_once_at_the_first_qualifying_cycle(cycles, n, window):
    wx, wy = window if window else (None, None)
    tally = Tally(n, wx, wy)
    engaged_at = []
    engaged = False
    for i, c in enumerate(cycles):
        tally.record(Cycle(c))
        # The monitor engages once; after an engage the machine is no longer counting.
        if not engaged and tally.prolonged:
            engaged = True
            engaged_at.append(i)
    expected = _first_engage_expected(cycles, n, wx, wy)
    assert engaged_at == ([] if expected is None else [expected])
    if engaged_at:
        assert cycles[engaged_at[0]] == "failed"  # never on an inconclusive or ok cycle
