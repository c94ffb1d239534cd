"""The agent's own shortage of file descriptors, told apart from the network's failures.

A socket that cannot be opened (EMFILE: the agent's open-files limit; ENFILE: the system's)
fails before any packet leaves: it says nothing about the registry, the resolvers or the path
to them. The checks still fail (a check that could not run did not pass), with the phase's
reason for a local failure to dial (`tcp_unreachable`, as for EADDRNOTAVAIL, the other local
refusal; `dns_timeout`, as for the other socket errors on the way to a resolver) and a detail
that says it is the agent's trouble; and the agent logs it as an error, at most once a minute,
so that a descriptor leak shows in its log as what it is.
"""

from __future__ import annotations

import errno
import logging
import time

OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
LOG_EVERY_SECONDS = 60.0

log = logging.getLogger("probe.checks")
# When the shortage was last logged (monotonic seconds); one per process, as the limit is.
_last_logged: list[float] = []


def shortage(error: BaseException) -> str | None:
    """The words for an error that is the agent running out of file descriptors, or None."""
    if not isinstance(error, OSError) or error.errno not in OUT_OF_DESCRIPTORS:
        return None
    which = "the agent's" if error.errno == errno.EMFILE else "the system's"
    return (
        f"not attempted: the agent ran out of file descriptors ({which} open-files limit, "
        f"{errno.errorcode.get(error.errno or 0, '?')}): the agent's own trouble, nothing is "
        "known of the network (raise the limit, or report a descriptor leak)"
    )


def log_shortage(error: BaseException, where: str) -> None:
    """Log a shortage as the agent's error, at most once every LOG_EVERY_SECONDS."""
    if shortage(error) is None or not isinstance(error, OSError):
        return
    now = time.monotonic()
    if _last_logged and now - _last_logged[0] < LOG_EVERY_SECONDS:
        return
    _last_logged[:] = [now]
    log.error(
        "the agent ran out of file descriptors",
        extra={"fields": {"where": where, "error": errno.errorcode.get(error.errno or 0, "?")}},
    )
