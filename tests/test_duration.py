"""Durations: Go's grammar plus plain seconds, exact messages for what is refused."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.duration import ACCEPTED, describe_input, format_duration, parse_duration

UNITS = "ns, us, ms, s, m, h"


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1.5h", 5400.0),
        ("1h0.5m", 3630.0),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("2us", 2e-6),
        ("2\u00b5s", 2e-6),  # MICRO SIGN, as Go accepts
        ("2\u03bcs", 2e-6),  # GREEK SMALL LETTER MU, as Go accepts
        ("1500ns", 1.5e-6),
        ("+5s", 5.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("-0", 0.0),
        ("10", 10.0),
        ("2.5", 2.5),
        (" 10s ", 10.0),
        (10, 10.0),
        (2.5, 2.5),
        (0, 0.0),
        (-0.0, 0.0),
    ],
)
def test_accepted(given: object, seconds: float) -> None:
    """Go durations, compound ones, numeric strings and numbers all give seconds."""
    assert parse_duration(given) == seconds


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", f"an empty string is not a duration (expected {ACCEPTED})"),
        ("   ", f"an empty string is not a duration (expected {ACCEPTED})"),
        ("-5s", f'"-5s" is negative (expected {ACCEPTED})'),
        ("-1m30s", f'"-1m30s" is negative (expected {ACCEPTED})'),
        ("-2", f'"-2" is negative (expected {ACCEPTED})'),
        (-1, f"-1 is negative (expected {ACCEPTED})"),
        (-0.5, f"-0.5 is negative (expected {ACCEPTED})"),
        (True, f"true is a boolean, not a duration (expected {ACCEPTED})"),
        (False, f"false is a boolean, not a duration (expected {ACCEPTED})"),
        (math.nan, f"nan is not a number (expected {ACCEPTED})"),
        (math.inf, f"inf is too large (expected {ACCEPTED})"),
        (10**400, f"a very large number is too large (expected {ACCEPTED})"),
        ("nan", f'"nan" is not a duration (expected {ACCEPTED})'),
        ("inf", f'"inf" is not a duration (expected {ACCEPTED})'),
        ("1e3", f'"1e3" has an unknown unit "e" (expected {ACCEPTED}; units: {UNITS})'),
        ("yes", f'"yes" is not a duration (expected {ACCEPTED})'),
        ("10x", f'"10x" has an unknown unit "x" (expected {ACCEPTED}; units: {UNITS})'),
        ("10S", f'"10S" has an unknown unit "S" (expected {ACCEPTED}; units: {UNITS})'),
        ("1d", f'"1d" has an unknown unit "d" (expected {ACCEPTED}; units: {UNITS})'),
        ("1m 30s", f'"1m 30s" has an unknown unit "m " (expected {ACCEPTED}; units: {UNITS})'),
        ("1m30", f'"1m30" has no unit after 30 (expected {ACCEPTED}; units: {UNITS})'),
        ("s", f'"s" is not a duration (expected {ACCEPTED})'),
        (".", f'"." is not a duration (expected {ACCEPTED})'),
        ("-", f'"-" is not a duration (expected {ACCEPTED})'),
        ("--5s", f'"--5s" is not a duration (expected {ACCEPTED})'),
        ("\u0663s", f'"\u0663s" is not a duration (expected {ACCEPTED})'),  # ARABIC-INDIC THREE
        ("9" * 400 + "h", f'"{"9" * 200}..." is too large (expected {ACCEPTED})'),
        (None, f"null is not a duration (expected {ACCEPTED})"),
        ([1], f"a list is not a duration (expected {ACCEPTED})"),
    ],
)
def test_refused(given: object, message: str) -> None:
    """Negative, empty, boolean, non-finite and unknown-unit values are refused, exactly so."""
    with pytest.raises(ValueError) as caught:
        parse_duration(given)
    assert str(caught.value) == message


def test_message_stays_on_one_line() -> None:
    """A value with a newline is shown escaped, so one problem is one line of output."""
    with pytest.raises(ValueError) as caught:
        parse_duration("5s\nrm -rf")
    assert "\n" not in str(caught.value)
    assert describe_input("a\nb") == '"a\\nb"'
    assert describe_input("a\u2028b\u202ec") == '"a\\u2028b\\u202ec"'


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (0.0015, "1.5ms"),
        (1, "1s"),
        (10, "10s"),
        (60, "1m"),
        (90, "1m30s"),
        (300, "5m"),
        (3600, "1h"),
        (3605, "1h0m5s"),
        (3660, "1h1m"),
        (5400.25, "1h30m0.25s"),
        (86400 * 2, "48h"),
        (-90, "-1m30s"),
        (math.inf, "inf"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    """Durations are written as a person writes them, in Go's units."""
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_format_round_trips(seconds: float) -> None:
    """Whatever format_duration writes, parse_duration reads back to the same float."""
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=10**15))
def test_integer_seconds_round_trip(seconds: int) -> None:
    """Whole seconds survive format and parse, as ints and as numeric strings."""
    assert parse_duration(format_duration(seconds)) == seconds
    assert parse_duration(str(seconds)) == seconds


_GO_UNITS = {"ns": Decimal("1e-9"), "us": Decimal("1e-6"), "ms": Decimal("1e-3"), "s": 1, "m": 60}


@given(
    st.lists(
        st.tuples(
            st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False),
            st.sampled_from([*_GO_UNITS, "h"]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_compound_sums_parts(parts: list[tuple[Decimal, str]]) -> None:
    """`1h2m3.5s` is the exact sum of its parts, rounded once to a float."""
    text = "".join(f"{number}{unit}" for number, unit in parts)
    factors = {**_GO_UNITS, "h": 3600}
    expected = sum((number * Decimal(factors[unit]) for number, unit in parts), Decimal(0))
    assert parse_duration(text) == float(expected)


@given(st.text())
def test_arbitrary_text_only_value_error(text: str) -> None:
    """Any text gives seconds or a ValueError; no other exception, never a negative or inf."""
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        assert str(error)
    else:
        assert math.isfinite(seconds)
        assert seconds >= 0


@given(st.from_regex(r"[-+]?[0-9.]{0,6}(ns|us|ms|s|m|h|x|)?([0-9.]{0,4}[a-z]{0,2}){0,3}"))
def test_duration_like_text_only_value_error(text: str) -> None:
    """Near-misses of the grammar (the text that reaches the unit scanner) never crash."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert math.isfinite(seconds)
    assert seconds >= 0
