"""The scheduler of `registry-probe run`: probes every registry on its interval.

It wakes at least once a second (the heartbeat /healthz reads), starts the probes that are
due, each in one TaskGroup, at most `concurrency` at a time, and stops, cancelling every probe in
flight, when told to. The probes are `engine.probe_registry()`, which bounds each check by the
config's timeout; the agent adds an outer safety deadline only against an engine that never
returns. Results go to the metrics collector, which the HTTP server renders at scrape time.

The registries to probe are the engine's: the config's, and those the node's runtimes are
configured for, which the engine works out again whenever the node view changes (a new mirror in
hosts.toml is probed within an interval, no SIGHUP needed). Each keeps its own schedule. So do
the images the image checker names (the config's `images:` and the node's sandbox image), which
are scheduled beside the registries, under keys of their own (`image <reference>`).

SIGHUP reloads the config, read in a thread so that a large file never stalls the server or the
probes; a bad new config is logged and the old one kept, with
`registry_probe_config_last_reload_success` 0. A reload never cancels a probe in flight (a slow
registry is not starved by a storm of SIGHUPs), and reloads are coalesced: at most one per
`RELOAD_MIN_SECONDS`. A new or changed registry is probed at once; the others keep their
schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import random
import time
from collections.abc import Callable
from typing import Protocol

from probe.agent.logs import CheckStates, log_changes
from probe.config import Config, ConfigError, RegistryConfig
from probe.images.check import ImageChecker, ImageTarget
from probe.images.result import ImageReport
from probe.node.problems import NodeProblem
from probe.result import RegistryReport
from probe.views.metrics import ProbeCollector, build_registry

log = logging.getLogger("probe.agent")

CONCURRENCY = 8  # registries probed at once; a node has a handful, this bounds a long list
JITTER = 0.1  # each interval is drawn from interval * [0.9, 1.1] (SPEC.md: ±10%)
HEARTBEAT_SECONDS = 1.0  # the scheduler wakes at least this often
HEALTHY_WITHIN_SECONDS = 15.0  # /healthz fails when the scheduler has not woken for this long
# The engine bounds every check by `timeout`; a registry has at most about a dozen checks
# (dns, tcp, tls per endpoint, http, proxy, ratelimit). Past this many timeouts the engine is
# stuck, and the agent gives up on that probe rather than on the registry.
SAFETY_DEADLINE_TIMEOUTS = 16
RELOAD_MIN_SECONDS = 1.0  # SIGHUPs closer together than this are one reload


class EngineLike(Protocol):
    """What the agent needs from `probe.engine.Engine`."""

    @property
    def config(self) -> Config: ...

    def registries(self) -> tuple[RegistryConfig, ...]: ...

    def problems(self) -> tuple[NodeProblem, ...]: ...

    async def probe_registry(self, registry: RegistryConfig) -> RegistryReport: ...

    def reconfigured(self, config: Config) -> EngineLike: ...


def jittered(interval: float, rng: random.Random) -> float:
    """The wait before a registry's next probe: interval ± 10%, so nodes do not probe in step."""
    return interval * rng.uniform(1.0 - JITTER, 1.0 + JITTER)


class Agent:
    """Schedules the probes and keeps the results the HTTP server renders."""

    def __init__(
        self,
        engine: EngineLike,
        build_config: Callable[[], Config],
        *,
        collector: ProbeCollector | None = None,
        concurrency: int = CONCURRENCY,
        rng: random.Random | None = None,
        image_checker: Callable[[EngineLike], ImageChecker | None] | None = None,
    ) -> None:
        self.collector = collector if collector is not None else ProbeCollector()
        self.metrics = build_registry(self.collector)
        self._build_config = build_config
        self._concurrency = concurrency
        self._rng = rng if rng is not None else random.Random()  # noqa: S311  # jitter, not secrets
        self._states = CheckStates()
        self._wake = asyncio.Event()
        self._stopping = False
        self._reload_requested = False
        self._last_reload = -RELOAD_MIN_SECONDS
        self._engine = engine
        self._image_checker = image_checker or (lambda _: None)
        self._checker = self._image_checker(engine)
        self._images: dict[str, ImageTarget] = {}  # by "image <as written>"
        self._image_reasons: dict[str, str | None] = {}  # the last reason, to log changes
        self._registries: dict[str, RegistryConfig] = {}
        self._due: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._attempted: set[str] = set()
        self._troubled: dict[str, str] = {}  # registry -> what went wrong with its last probe
        self._ready = False
        self._problems: frozenset[NodeProblem] = frozenset()
        self._taken: tuple[tuple[object, ...], ...] | None = None  # see _sync_registries
        self.last_tick = time.monotonic()
        self._sync_registries()

    # -- state the HTTP server reads --------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once every registry has been probed once; stays true across reloads."""
        return self._ready

    def healthy(self) -> bool:
        return time.monotonic() - self.last_tick < HEALTHY_WITHIN_SECONDS

    @property
    def config(self) -> Config:
        return self._engine.config

    @property
    def interval(self) -> float:
        return self._engine.config.interval

    def registries(self) -> tuple[str, ...]:
        return tuple(self._registries)

    # -- control, from signal handlers ------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    # -- the scheduler ----------------------------------------------------------------------

    async def run(self, *, once: bool = False) -> None:
        """Probe until stopped (or, with `once`, until every registry was probed once)."""
        semaphore = asyncio.Semaphore(self._concurrency)
        try:
            async with asyncio.TaskGroup() as probes:
                while not self._stopping:
                    self.last_tick = time.monotonic()
                    if self._reload_requested and (
                        self.last_tick - self._last_reload >= RELOAD_MIN_SECONDS
                    ):
                        self._reload_requested = False
                        self._last_reload = self.last_tick
                        await self._reload()
                    self._sync_registries()
                    self._start_due(probes, semaphore, once)
                    if once and self._ready and not self._inflight:
                        break
                    await self._sleep_until_due(once)
                self._cancel_inflight()
        finally:
            self._inflight.clear()

    def _start_due(
        self, probes: asyncio.TaskGroup, semaphore: asyncio.Semaphore, once: bool
    ) -> None:
        now = time.monotonic()
        targets: dict[str, RegistryConfig | ImageTarget] = {**self._registries, **self._images}
        for host, target in targets.items():
            if host in self._inflight or self._due.get(host, now) > now:
                continue
            if once and host in self._attempted:
                continue
            self._due[host] = now + jittered(self.interval, self._rng)
            probe = (
                self._probe(self._engine, target, semaphore)
                if isinstance(target, RegistryConfig)
                else self._probe_image(target, semaphore)
            )
            self._inflight[host] = probes.create_task(probe, name=f"probe {host}")

    async def _sleep_until_due(self, once: bool) -> None:
        """Until the next registry is due, a probe ends, a signal comes, or a heartbeat passes."""
        now = time.monotonic()
        waiting = [
            self._due.get(host, now) - now
            for host in (*self._registries, *self._images)
            if host not in self._inflight and not (once and host in self._attempted)
        ]
        if self._reload_requested:  # coalesced: due when the minimum gap has passed
            waiting.append(self._last_reload + RELOAD_MIN_SECONDS - now)
        delay = max(0.0, min([HEARTBEAT_SECONDS, *waiting]))
        # Always awaits, even with delay 0, so the loop can never starve the server or probes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()
        self._wake.clear()

    def _cancel_inflight(self) -> None:
        for task in self._inflight.values():
            task.cancel()

    async def _probe(
        self, engine: EngineLike, registry: RegistryConfig, semaphore: asyncio.Semaphore
    ) -> None:
        host = registry.label
        try:
            async with semaphore:
                report = await self._bounded_probe(engine, registry)
            # A probe that outlived its registry (a reload or the node removed it) is dropped.
            if self._registries.get(host) == registry:
                if report is not None:
                    self.collector.record(report)
                    log_changes(log, self._states.update(report))
                self._attempted.add(host)
                self._check_ready()
        finally:
            # Also when cancelled (stop): the registry can be probed again.
            if self._inflight.get(host) is asyncio.current_task():
                del self._inflight[host]
            self._wake.set()

    async def _probe_image(self, target: ImageTarget, semaphore: asyncio.Semaphore) -> None:
        """One image's check (bounded like a registry's probe); its state changes logged."""
        key = f"image {target.image}"
        checker = self._checker
        try:
            report: ImageReport | None = None
            if checker is not None:
                async with semaphore:
                    deadline = checker.engine.config.timeout * SAFETY_DEADLINE_TIMEOUTS
                    try:
                        async with asyncio.timeout(deadline):
                            report = await checker.check(target)
                    except TimeoutError:
                        self._engine_trouble(key, "image check did not finish in time")
                    # The outermost edge, as for a registry's probe.
                    except Exception:
                        self._engine_trouble(key, "image check failed unexpectedly", exc_info=True)
            if self._images.get(key) == target:
                if report is not None:
                    self._troubled.pop(key, None)
                    self.collector.record_image(report)
                    self._log_image(key, report)
                self._attempted.add(key)
                self._check_ready()
        finally:
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]
            self._wake.set()

    def _log_image(self, key: str, report: ImageReport) -> None:
        reason = None if report.reason is None else str(report.reason)
        previous = self._image_reasons.get(key)
        self._image_reasons[key] = reason
        if reason == previous:
            return
        fields = {"image": report.image, "role": report.role}
        if reason is None:
            log.info("image pullable again", extra={"fields": fields})
            return
        fields |= {"reason": reason, "detail": report.detail}
        if previous is not None:
            fields["previous_reason"] = previous
        log.warning("image would not pull", extra={"fields": fields})

    async def _bounded_probe(
        self, engine: EngineLike, registry: RegistryConfig
    ) -> RegistryReport | None:
        """The engine's report, or None when it overran its safety deadline or failed.

        Like check states, the engine's own troubles are logged when they start and end, not
        on every interval.
        """
        host = registry.label
        deadline = engine.config.timeout * SAFETY_DEADLINE_TIMEOUTS
        try:
            async with asyncio.timeout(deadline):
                report = await engine.probe_registry(registry)
        except TimeoutError:
            self._engine_trouble(
                host, "probe did not finish within its safety deadline", deadline_seconds=deadline
            )
            return None
        # The outermost edge between the agent and the engine: a bug in one probe is logged and
        # the registry tried again next interval; it never stops the agent.
        except Exception:
            self._engine_trouble(host, "probe failed unexpectedly", exc_info=True)
            return None
        if self._troubled.pop(host, None) is not None:
            log.info("probe completed again", extra={"fields": {"registry": host}})
        return report

    def _engine_trouble(
        self, host: str, message: str, exc_info: bool = False, **fields: float
    ) -> None:
        if self._troubled.get(host) == message:
            return
        self._troubled[host] = message
        log.error(message, exc_info=exc_info, extra={"fields": {"registry": host, **fields}})

    def _check_ready(self) -> None:
        if not self._ready and self._attempted >= self._registries.keys() | self._images.keys():
            self._ready = True
            log.info("first cycle complete", extra={"fields": {"registries": len(self._attempted)}})

    # -- registries and configuration --------------------------------------------------------

    def _sync_registries(self, *, announce: bool = True) -> tuple[set[str], set[str]]:
        """Take the engine's registries (config plus what the node view names); a new or
        changed one is due now, the others keep their schedule. Returns (added, removed).
        The checker's images and the node's configuration problems are taken along (problems
        logged when they appear and when they are gone, counted in the metrics)."""
        try:
            registries, problems = self._engine.registries(), self._engine.problems()
            images = self._checker.targets() if self._checker else ()
            # The engine and the checker hand back the same tuples until the node view changes
            # or a reload makes new ones: the scheduler wakes many times a second and compares
            # nothing then.
            taken = (registries, problems, images)
            if self._taken is not None and all(map(operator.is_, taken, self._taken)):
                return set(), set()
        # The outermost edge: reading the node must never stop the scheduler; the last list
        # stands until it reads again.
        except Exception:
            self._engine_trouble("", "reading the node failed unexpectedly", exc_info=True)
            return set(), set()
        self._taken = taken
        self._sync_images({f"image {t.image}": t for t in images})
        self._sync_problems(frozenset(problems))
        wanted = {r.label: r for r in registries}
        if wanted == self._registries:
            return set(), set()
        old = self._registries
        self._registries = wanted
        for host, registry in wanted.items():
            if old.get(host) != registry:
                self._due.pop(host, None)
                self._attempted.discard(host)
        for host in old.keys() - wanted.keys():
            self._due.pop(host, None)
        self.collector.configure(wanted)
        self._states.retain(wanted)
        self._attempted &= wanted.keys()
        kept = wanted.keys() | self._images.keys()
        self._troubled = {h: m for h, m in self._troubled.items() if h in kept or not h}
        self._check_ready()
        added, removed = wanted.keys() - old.keys(), old.keys() - wanted.keys()
        if announce and old and (added or removed):
            log.info(
                "registries changed",
                extra={
                    "fields": {
                        "registries": len(wanted),
                        "added": ",".join(sorted(added)),
                        "removed": ",".join(sorted(removed)),
                    }
                },
            )
        return set(added), set(removed)

    def _sync_images(self, wanted: dict[str, ImageTarget]) -> None:
        """Take the checker's images; a new or changed one is due now."""
        if wanted == self._images:
            return
        old = self._images
        self._images = wanted
        for key in old.keys() | wanted.keys():
            if old.get(key) != wanted.get(key):
                self._due.pop(key, None)
                self._attempted.discard(key)
        self._image_reasons = {k: r for k, r in self._image_reasons.items() if k in wanted}
        self.collector.configure_images(t.image for t in wanted.values())
        self._check_ready()

    def _sync_problems(self, problems: frozenset[NodeProblem]) -> None:
        if problems == self._problems:
            return
        for problem in sorted(problems - self._problems, key=lambda p: (p.source, p.line or 0)):
            fields = {"file": problem.where, "runtime": problem.runtime, "problem": problem.message}
            if problem.effect:
                fields["effect"] = problem.effect
            log.warning("node configuration problem", extra={"fields": fields})
        for problem in sorted(self._problems - problems, key=lambda p: (p.source, p.line or 0)):
            fields = {"file": problem.where, "runtime": problem.runtime}
            log.info("node configuration problem gone", extra={"fields": fields})
        self._problems = problems
        self.collector.node_problems = tuple(problems)

    async def _reload(self) -> None:
        old_config = self._engine.config
        try:
            # In a thread: a 1 MiB file takes PyYAML seconds to parse, and the server and the
            # probes in flight go on meanwhile (the scheduler alone waits for it).
            config = await asyncio.to_thread(self._build_config)
            engine = self._engine.reconfigured(config)
        except ConfigError as error:
            self.collector.config_reload_success = False
            log.error(
                "config reload failed; keeping the previous config",
                extra={"fields": {"error": str(error)}},
            )
            return
        if config.listen != old_config.listen:
            log.warning(
                "the listen address changes only on restart",
                extra={"fields": {"listen": old_config.listen.label}},
            )
        self._engine = engine
        self._checker = self._image_checker(engine)
        self.collector.config_reload_success = True
        added, removed = self._sync_registries(announce=False)
        log.info(
            "config reloaded",
            extra={
                "fields": {
                    "registries": len(self._registries),
                    "added": ",".join(sorted(added)),
                    "removed": ",".join(sorted(removed)),
                }
            },
        )
