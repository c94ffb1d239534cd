"""Durations as users of Go tools write them: `500ms`, `10s`, `5m`, `1h`, `1m30s`, or plain seconds.

The grammar is Go's `time.ParseDuration` (decimal numbers, each with a unit, summed: `1h2m0.5s`;
units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), plus what YAML hands over for a bare number: an int,
a float or a numeric string, in seconds. Unlike Go, a negative duration is an error here: nothing
in the configuration can last less than nothing.

Arithmetic is decimal, so `format_duration` and `parse_duration` round-trip every finite
non-negative float exactly.
"""

from __future__ import annotations

import decimal
import math
import re
from decimal import Decimal

from probe.display import describe_input

ACCEPTED = "a duration such as 500ms, 10s, 5m, 1h or 1m30s, or plain seconds"

# Go's unit table (time/format.go, unitMap): both micro signs are accepted, as Go does.
_UNITS: dict[str, Decimal] = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "\u00b5s": Decimal("1e-6"),  # MICRO SIGN
    "\u03bcs": Decimal("1e-6"),  # GREEK SMALL LETTER MU
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_UNIT_NAMES = "ns, us, ms, s, m, h"
# ASCII digits only: `\d` would also take Arabic-Indic and other digits, which Go does not.
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
# Enough digits that every float (up to ~1.8e308, down to 5e-324) and every sum of the parts
# format_duration writes is exact; text from users is rounded at this precision, never rejected.
_PRECISION = 800


def parse_duration(value: object) -> float:
    """Seconds from a Go-style duration string, a numeric string, an int or a float.

    Raises ValueError saying what was given and what is accepted.
    """
    shown = describe_input(value)
    if isinstance(value, bool):  # YAML's `yes`/`on` arrive as bool, which is an int subclass
        raise ValueError(f"{shown} is a boolean, not a duration (expected {ACCEPTED})")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"{shown} is too large (expected {ACCEPTED})") from None
        return _checked(seconds, shown)
    if not isinstance(value, str):
        raise ValueError(f"{shown} is not a duration (expected {ACCEPTED})")
    text = value.strip()
    if not text:
        raise ValueError(f"an empty string is not a duration (expected {ACCEPTED})")
    negative = text.startswith("-")
    if text[0] in "+-":
        text = text[1:]
        if not text:
            raise ValueError(f"{shown} is not a duration (expected {ACCEPTED})")
    # A bare number is seconds; anything else is Go's grammar.
    total = Decimal(text) if _NUMBER.fullmatch(text) else _parse_units(text, shown)
    if negative and total != 0:
        raise ValueError(f"{shown} is negative (expected {ACCEPTED})")
    return _checked(float(total), shown)


def _parse_units(text: str, shown: str) -> Decimal:
    """Sum the `<number><unit>` parts of a Go duration (without its sign)."""
    total = Decimal(0)
    pos = 0
    with decimal.localcontext() as ctx:
        ctx.prec = _PRECISION
        while pos < len(text):
            number = _NUMBER.match(text, pos)
            if number is None:
                raise ValueError(f"{shown} is not a duration (expected {ACCEPTED})")
            pos = number.end()
            unit_start = pos
            while pos < len(text) and not (text[pos].isascii() and text[pos] in "0123456789."):
                pos += 1
            unit = text[unit_start:pos]
            if not unit:
                raise ValueError(
                    f"{shown} has no unit after {number.group()} "
                    f"(expected {ACCEPTED}; units: {_UNIT_NAMES})"
                )
            factor = _UNITS.get(unit)
            if factor is None:
                raise ValueError(
                    f"{shown} has an unknown unit {describe_input(unit)} "
                    f"(expected {ACCEPTED}; units: {_UNIT_NAMES})"
                )
            total += Decimal(number.group()) * factor
    return total


def _checked(seconds: float, shown: str) -> float:
    if math.isnan(seconds):
        raise ValueError(f"{shown} is not a number (expected {ACCEPTED})")
    if seconds < 0:
        raise ValueError(f"{shown} is negative (expected {ACCEPTED})")
    if math.isinf(seconds):
        raise ValueError(f"{shown} is too large (expected {ACCEPTED})")
    return seconds + 0.0  # -0.0 becomes 0.0


def format_duration(seconds: float) -> str:
    """A duration as a person writes it, and as parse_duration reads it back exactly.

    `0s`, `500ms`, `10s`, `1m30s`, `1h0m0.5s`; hours are not folded into days, as in Go.
    """
    if not math.isfinite(seconds):
        return repr(seconds)
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0s"
    with decimal.localcontext() as ctx:
        ctx.prec = _PRECISION
        exact = Decimal(repr(float(seconds)))  # the shortest decimal that is this float
        if exact < 1:
            return _decimal_text(exact * 1000) + "ms"
        hours, rest = divmod(exact, 3600)
        minutes, secs = divmod(rest, 60)
        text = ""
        if hours:
            text += f"{_decimal_text(hours)}h"
        # 1h is clearer than 1h0m, but a zero minute stays between hours and seconds: 1h0m5s.
        if minutes or (hours and secs):
            text += f"{_decimal_text(minutes)}m"
        if secs or not text:
            text += f"{_decimal_text(secs)}s"
        return text


def _decimal_text(value: Decimal) -> str:
    """Plain digits, no exponent, no trailing zeros: Decimal("5E+2") is "500"."""
    return format(value.normalize(), "f")
