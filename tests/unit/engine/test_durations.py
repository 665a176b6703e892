"""engine.durations: the accepted forms, and the values that once broke the engine."""
from __future__ import annotations

import math

import pytest

from engine.durations import MAX_DURATION, format_duration, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("30s", 30.0), ("10m", 600.0), ("7h", 25200.0), ("2d", 172800.0),
    ("1.5h", 5400.0), (" 30 s ", 30.0), (45, 45.0), (0.25, 0.25), ("366d", MAX_DURATION),
])
def test_accepted_forms(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("value", "words"), [
    (math.nan, "finite"), (math.inf, "finite"), (-math.inf, "finite"),
    (-1, "negative"), (True, "not a duration"), (None, "not a duration"),
    ("10 minutes", "not a duration"), ("30s\n", "not a duration"), ("1e9s", "not a duration"),
    ("9" * 400 + "s", "not a duration"), (10**400, "too long"), (1e300, "too long"),
    ("367d", "too long: at most 366d"), ("nan", "not a duration"), ("inf", "not a duration"),
])
def test_refused_values_name_the_problem(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_duration(value)  # type: ignore[arg-type]


def test_positive_refuses_zero_only_when_asked() -> None:
    assert parse_duration("0s") == 0.0
    for zero in ("0s", "0", 0, 0.0, "0ms", "0.000s"):
        with pytest.raises(ValueError, match="more than 0"):
            parse_duration(zero, positive=True)
    assert parse_duration("1ms", positive=True) == 0.001


def test_format_never_crashes_on_odd_numbers() -> None:
    assert format_duration(math.nan) == "0ms"
    assert format_duration(math.inf) == "forever"
    assert format_duration(90) == "1m30s"
