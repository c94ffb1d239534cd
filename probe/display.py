"""Outside text made fit for a message: printable, escaped, and bounded in length.

Whatever a server, a node file or a user writes may reach a report, a log line or an error:
newlines would split one problem over lines, control and bidi characters would make a message
read differently from what it says, and a pasted blob would drown it. Every message quotes
outside text through `describe_input` (quoted, escaped) or `clip` (plain, for free text).
"""

from __future__ import annotations

import json

SHOWN_MAX = 200  # long enough for any host name or sane path; a pasted blob is cut
CLIP_MAX = 80  # a phrase from a server: a title, an error code, a reason phrase


def describe_input(value: object, limit: int = SHOWN_MAX) -> str:
    """How a given value is shown in a message: strings quoted and escaped, long ones cut."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int) and value.bit_length() > 128:
        # repr() of a huge int is unreadable, and past 4300 digits Python refuses to make it.
        return "a very large number"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if len(value) > limit:
            value = value[:limit] + "..."
        quoted = json.dumps(value, ensure_ascii=False)
        return escape(quoted)
    return f"a {type(value).__name__}"


def escape(text: str) -> str:
    """Every character that is not printable as `\\uXXXX`."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def clip(text: str, limit: int = CLIP_MAX) -> str:
    """Free text from outside, unquoted: non-printable characters as `?`, at most `limit` long."""
    printable = "".join(ch if ch.isprintable() else "?" for ch in text)
    return printable if len(printable) <= limit else printable[: limit - 1] + "…"
