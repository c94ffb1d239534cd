"""Logging: text or JSON lines on stderr, and the one-line-per-state-change rule of the agent.

The agent logs when a check starts failing (with its reason), changes reason, or recovers, never
once per probe: on a node with a healthy network the log stays quiet. Secrets never reach a log
line (SPEC.md, "Configuration"): the results carry redacted details already, and `redact()` masks
any URL password or bearer token that slips through, as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from probe.redact import MASK, redact_url
from probe.result import RegistryReport
from probe.views.retention import EndpointRetention

LOGGER_NAME = "probe"

# A URL anywhere in a line; its userinfo is redacted by the same rule as everywhere else.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
# Authorization: Bearer <token>, Basic <credentials>, and token=/password= pairs in query strings
_AUTH_VALUE = re.compile(r"(?P<head>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_SECRET_PARAM = re.compile(
    r"(?P<head>\b(?:token|access_token|password|passwd|secret)=)[^\s&\"]+", re.IGNORECASE
)


def redact(text: str) -> str:
    """Mask URL passwords (probe.redact's rule), bearer/basic credentials and token= values."""
    text = _URL.sub(lambda match: redact_url(match.group(0)), text)
    text = _AUTH_VALUE.sub(rf"\g<head>{MASK}", text)
    return _SECRET_PARAM.sub(rf"\g<head>{MASK}", text)


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """`2026-11-25T17:22:43.120Z WARNING check failing registry=... reason=...`"""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.getMessage()]
        for key, value in _fields(record).items():
            text = str(value)
            parts.append(f"{key}={json.dumps(text) if (' ' in text or not text) else text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class _ProbeHandler(logging.StreamHandler[TextIO]):
    """Ours, so that a second setup_logging() replaces it instead of adding another."""


def setup_logging(
    log_format: str = "text", stream: TextIO | None = None, level: int = logging.INFO
) -> logging.Handler:
    """Send the `probe` loggers to stderr (or `stream`) as text or JSON lines; returns the handler.

    Replaces a handler set up by an earlier call, so calling it twice does not double the lines.
    """
    if log_format not in ("text", "json"):
        raise ValueError(f"log format must be text or json, not {log_format!r}")
    handler = _ProbeHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if isinstance(h, _ProbeHandler)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler


@dataclass(frozen=True)
class StateChange:
    """A check that started failing, changed reason, or recovered."""

    registry: str
    endpoint: str
    check: str
    reason: str | None  # None: recovered
    previous: str | None  # None: was passing, or never seen
    detail: str

    @property
    def message(self) -> str:
        if self.reason is None:
            return "check recovered"
        if self.previous is None:
            return "check failing"
        return "check failing for another reason"

    def fields(self) -> dict[str, str]:
        fields = {"registry": self.registry, "endpoint": self.endpoint, "check": self.check}
        if self.reason is not None:
            fields["reason"] = self.reason
        if self.previous is not None:
            fields["previous_reason"] = self.previous
        if self.reason is not None and self.detail:
            fields["detail"] = self.detail
        return fields


class CheckStates:
    """The last known reason of every check (None when passing), to find state changes.

    A check seen for the first time passing is not a change; seen first failing, it is. A check
    missing from a report (skipped because an earlier one failed) keeps its state, as long as
    `retention` remembers its endpoint: the states of an endpoint the registry stopped naming
    (a token realm host it rotates) are forgotten with it, without a line, so the states stay
    as few as the endpoints the registry names now.
    """

    def __init__(self, retention: EndpointRetention | None = None) -> None:
        self._reasons: dict[tuple[str, str, str], str | None] = {}
        self._retention = retention if retention is not None else EndpointRetention()

    def __len__(self) -> int:
        """How many checks have a known state."""
        return len(self._reasons)

    def update(self, report: RegistryReport) -> list[StateChange]:
        changes: list[StateChange] = []
        for result in report.checks:
            key = (report.registry, result.endpoint.label, str(result.check))
            reason = None if result.reason is None else str(result.reason)
            previous = self._reasons.get(key)  # None: passing, or never seen (not a change)
            self._reasons[key] = reason
            if reason == previous:
                continue
            changes.append(StateChange(*key, reason, previous, result.detail))
        forgotten = self._retention.observe(report)
        if forgotten:
            self._reasons = {
                key: reason
                for key, reason in self._reasons.items()
                if key[0] != report.registry or key[1] not in forgotten
            }
        return changes

    def retain(self, registries: Iterable[str]) -> None:
        """Forget the registries that left the config."""
        keep = frozenset(registries)
        self._reasons = {k: v for k, v in self._reasons.items() if k[0] in keep}
        self._retention.retain(keep)


def log_changes(logger: logging.Logger, changes: Iterable[StateChange]) -> None:
    for change in changes:
        level = logging.INFO if change.reason is None else logging.WARNING
        logger.log(level, change.message, extra={"fields": change.fields()})
