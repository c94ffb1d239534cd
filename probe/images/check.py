"""One image, pulled as the node's runtime would pull it: the orchestration of `check --image`.

For a reference (`probe.images.reference`) the registry's pull plan (the engine's: mirrors in
the runtime's order, then the registry itself, each with its trust) is walked host by host, as
containerd's resolver does (remotes/docker/resolver.go, `Resolve`):

- only hosts that may resolve a tag are asked for a tag; any host that may pull, for a digest
  (and a digest missing from every host's manifests is asked for as a blob, as containerd does);
- a host that fails its connectivity checks (the engine's `probe_registry` of the same view:
  dns, tcp, tls, proxy, http, its token realm and blob hosts) is skipped with that failure;
- otherwise the manifest is asked for with a `HEAD` (never a `GET` unless the platform is
  checked where a GET is free): anonymous first, then with a token or Basic after a 401;
- 404 moves on without keeping an error; any other failure moves on keeping the first one;
  the first host that answers 2xx serves the pull. No host serving: the first failure kept, else
  `image_not_found`.

Credentials are offered as the kubelet offers them (`probe.images.keyring`): the pull secrets
(`--pull-secret`), then the config's `credentials_file` for the registry (Docker Hub's:
`dockerhub.credentials_file`); each matching account is tried in turn until one pull works, and
none at all when nothing matches.

The platform: for an index (multi-platform image) the node's platform (`uname -m`, as Go names
it) or `--platform` must be listed. Reading the index takes a `GET`, which on Docker Hub counts as
a pull: done there only when `--platform` is given.
"""

from __future__ import annotations

import asyncio
import platform as host_platform
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from probe.checks.client import CredentialsWithheld, FetchError, NodeClient
from probe.config import DOCKER_HUB_REGISTRY, HostPort, RegistryAddress, RegistryConfig
from probe.dockerhub.rules import DockerConfigError, parse_docker_config_entries
from probe.engine import Engine
from probe.images.auth import Authorization, authorize
from probe.images.keyring import Keyring, OfferedCredentials, lookup
from probe.images.pull import (
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    Answer,
    Platform,
    Step,
    classify_manifest,
    node_platform,
    platform_answer,
    repository_scope,
)
from probe.images.reference import ImageReference, InvalidReference, parse_reference
from probe.images.result import CONFIGURED, SANDBOX, ImageReport
from probe.node.registries import RegistryHost
from probe.node.view import NodeView
from probe.reasons import ROOT_CAUSE, CheckKind, Reason
from probe.result import CheckResult, HostResult, RegistryReport

MAX_ACCOUNTS = 4  # accounts tried per image: a keyring with more matches is a config problem
MAX_SECRET_BYTES = 1 << 20


class UnusableCredentials(Exception):
    """The config's credentials file for a registry cannot be read; the message names the file
    and why, never a secret."""


@dataclass(frozen=True)
class ImageTarget:
    """An image to check: as written, and why (named, or the node's sandbox image)."""

    image: str
    role: str = CONFIGURED
    source: str = "config"


def read_keyring(path: str, source: str) -> Keyring:
    """A `.dockerconfigjson` as a keyring. Raises OSError, UnicodeDecodeError or
    DockerConfigError (never with the secret in its message)."""
    with open(path, encoding="utf-8") as secret:
        return Keyring.of(source, parse_docker_config_entries(secret.read(MAX_SECRET_BYTES)))


@dataclass
class _Walk:
    """One account's walk over the hosts."""

    offer: OfferedCredentials | None
    checks: list[CheckResult] = field(default_factory=list)
    reason: Reason | None = Reason.IMAGE_NOT_FOUND
    detail: str = ""
    host: HostPort | None = None
    digest: str | None = None
    media_type: str | None = None
    platform: str | None = None


class ImageChecker:
    """Checks images on the node the engine reads, with the engine's plans and checks."""

    def __init__(
        self,
        engine: Engine,
        *,
        pull_secrets: tuple[Keyring, ...] = (),
        platform: Platform | None = None,
        sandbox: bool | None = None,
    ) -> None:
        self.engine = engine
        self.pull_secrets = pull_secrets
        # An explicit platform is checked everywhere, Docker Hub included (a GET there is a
        # pull); the node's own only where reading the index is free.
        self.explicit_platform = platform is not None
        self.platform = platform or node_platform(host_platform.machine())
        self.sandbox = engine.config.sandbox_image if sandbox is None else sandbox
        self._targets: tuple[int, tuple[ImageTarget, ...]] | None = None  # per view generation

    @classmethod
    def for_engine(cls, engine: object) -> ImageChecker | None:
        """The agent's checker for its engine; None for an engine that is not ours (a test's)."""
        return cls(engine) if isinstance(engine, Engine) else None

    def targets(
        self, view: NodeView | None = None, extra: tuple[ImageTarget, ...] = ()
    ) -> tuple[ImageTarget, ...]:
        """The images to check: `extra` (the command line's), the config's `images:`, then the
        node's sandbox image unless `sandbox_image: false`; each reference once (the sandbox's
        role wins). Without `extra`, the same tuple until the node view changes."""
        view = view or self.engine.node()
        if not extra and self._targets is not None and self._targets[0] == view.generation:
            return self._targets[1]
        found: dict[str, ImageTarget] = {}
        wanted = [*extra, *(ImageTarget(i) for i in self.engine.config.images)]
        if self.sandbox:
            sandbox = view.registries.sandbox_image
            if sandbox:
                wanted.append(ImageTarget(sandbox, SANDBOX, view.registries.sandbox_source))
        for target in wanted:
            try:
                key = str(parse_reference(target.image))
            except InvalidReference:
                key = target.image
            known = found.get(key)
            if known is None or target.role == SANDBOX:
                found[key] = (
                    target if known is None else ImageTarget(known.image, SANDBOX, target.source)
                )
        targets = tuple(found.values())
        if not extra:
            self._targets = (view.generation, targets)
        return targets

    def registry_for(self, reference: ImageReference) -> RegistryConfig:
        """The config's entry for the image's registry, or one made for it."""
        address = RegistryAddress.parse(reference.domain)
        for registry in self.engine.config.registries:
            if registry.address.identity == address.identity:
                return registry
        if address.is_docker_hub:
            return DOCKER_HUB_REGISTRY
        return RegistryConfig(address, source="image")

    async def check(
        self,
        target: ImageTarget,
        view: NodeView | None = None,
        reports: dict[str, RegistryReport] | None = None,
    ) -> ImageReport:
        """Whether the runtime would pull `target`, and if not, why. `reports` holds registry
        reports of the same view to reuse (by registry label); missing ones are probed."""
        view = view or self.engine.node()
        try:
            reference = parse_reference(target.image)
            registry = self.registry_for(reference)
        except ValueError as error:
            return self._refused(target, error)
        report = (reports or {}).get(registry.label)
        if report is None:
            report = await self.engine.probe_registry(registry, view)
        try:
            offers = lookup((*self.pull_secrets, *self._node_keyring(registry)), reference.name)
        except UnusableCredentials as error:
            walk = _Walk(None, reason=Reason.AUTH_FAILED, detail=str(error))
            return self._report(target, reference, registry, walk)
        walks: list[_Walk] = []
        for offer in offers[:MAX_ACCOUNTS] or (None,):
            walk = await self._walk(reference, registry, report, view, offer)
            walks.append(walk)
            if walk.reason is None:
                break
        chosen = next((w for w in walks if w.reason is None), walks[0])
        if len(walks) > 1 and chosen.reason is not None:
            others = "; ".join(
                f"{w.offer.describe() if w.offer else 'anonymous'}: {w.reason}" for w in walks[1:]
            )
            chosen.detail += f" (also tried: {others})"
        return self._report(target, reference, registry, chosen)

    def _node_keyring(self, registry: RegistryConfig) -> tuple[Keyring, ...]:
        """The config's credentials for the registry, as the node's keyring (read at each check:
        a mounted secret is replaced in place). Raises UnusableCredentials."""
        config = self.engine.config
        path = registry.credentials_file
        if registry.is_docker_hub:
            path = config.dockerhub.credentials_file or path
        if path is None:
            return ()
        try:
            return (read_keyring(path, f"credentials_file {path}"),)
        except OSError as error:
            raise UnusableCredentials(
                f"credentials file {path}: {error.strerror or error}"
            ) from None
        except (UnicodeDecodeError, DockerConfigError) as error:
            raise UnusableCredentials(f"credentials file {path}: {error}") from None

    async def _walk(
        self,
        reference: ImageReference,
        registry: RegistryConfig,
        report: RegistryReport,
        view: NodeView,
        offer: OfferedCredentials | None,
    ) -> _Walk:
        plan = self.engine.plan(registry, view)
        results: list[HostResult | None] = list(report.hosts)
        if len(results) != len(plan.hosts):
            results = [None] * len(plan.hosts)
        capability = "resolve" if reference.digest is None else "pull"
        hosts = [
            (h, r) for h, r in zip(plan.hosts, results, strict=True) if capability in h.capabilities
        ]
        walk = _Walk(offer)
        first_error: tuple[Reason, str, HostPort] | None = None
        paths = [("manifests", reference.object)]
        if reference.digest is not None:
            paths.append(("blobs", reference.digest))  # containerd's fallback for a digest
        not_found: list[str] = []
        for index, (kind, obj) in enumerate(paths):
            for host, result in hosts:
                endpoint = _endpoint(host)
                if result is not None and not result.usable and result.reason is not None:
                    if result.not_found:
                        continue  # its API root is 404: skipped, as a 404 on the manifest
                    if ROOT_CAUSE[result.reason] == 5:  # unreachable: the runtime moves on
                        if index == 0:
                            failure = _host_failure(report, result)
                            walk.checks.append(failure)
                            if first_error is None:
                                first_error = (result.reason, failure.detail, failure.endpoint)
                        continue
                answer, check, authorization = await self._ask(
                    reference, registry, host, view, offer, kind, obj
                )
                walk.checks.append(check)
                if answer.step == Step.SERVED:
                    walk.reason, walk.host = None, endpoint
                    walk.digest, walk.media_type = answer.digest, answer.media_type
                    walk.detail = f"served by {endpoint} ({answer.detail})"
                    if kind == "manifests":
                        await self._check_platform(
                            walk, reference, registry, host, view, authorization
                        )
                    return walk
                if answer.step == Step.NOT_FOUND:
                    not_found.append(str(endpoint))
                    continue
                if first_error is None and answer.reason is not None:
                    first_error = (answer.reason, check.detail, check.endpoint)
        if first_error is not None:
            walk.reason, walk.detail, walk.host = first_error
            return walk
        walk.reason = Reason.IMAGE_NOT_FOUND
        where = ", ".join(dict.fromkeys(not_found)) or "no host that may resolve it"
        walk.detail = f"{reference} is not found: 404 from {where}"
        walk.host = hosts[0][1].endpoint if hosts and hosts[0][1] is not None else None
        if walk.host is None and hosts:
            walk.host = _endpoint(hosts[0][0])
        return walk

    async def _ask(
        self,
        reference: ImageReference,
        registry: RegistryConfig,
        host: RegistryHost,
        view: NodeView,
        offer: OfferedCredentials | None,
        kind: str,
        obj: str,
    ) -> tuple[Answer, CheckResult, Authorization | None]:
        """The manifest (or blob) `HEAD` on one host, authorized after a 401 as the runtime
        would; with the check it makes for the report."""
        address = host.address
        endpoint = _endpoint(host)
        path = _request_path(reference, host, kind, obj)
        url = f"{address.url}{path}"
        client = self._client(registry, host, view)
        credentials = offer.credentials if offer is not None else None
        notes: list[str] = []
        if credentials is not None:
            withheld = client.credentials_refused(url)
            if withheld is not None:
                notes.append(f"credentials not sent: {withheld}")
                credentials = None
        accept = [("Accept", MANIFEST_ACCEPT)]
        authorization: Authorization | None = None
        timeout = self.engine.config.timeout
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                first = await client.request("HEAD", url, accept)
                answer = classify_manifest(
                    first.status,
                    first.headers,
                    authorization=None,
                    credentials_offered=credentials is not None,
                )
                if answer.step == Step.CHALLENGED:
                    granted = await authorize(
                        client, answer.challenges, repository_scope(reference.path), credentials
                    )
                    if isinstance(granted, Answer):
                        answer = granted
                    else:
                        authorization = granted
                        if granted.note:
                            notes.append(granted.note)
                        again = await client.request(
                            "HEAD",
                            url,
                            [*accept, ("Authorization", granted.header)],
                            credentials=granted.account,
                        )
                        answer = classify_manifest(
                            again.status,
                            again.headers,
                            authorization=granted.scheme,
                            credentials_offered=granted.account,
                        )
        except TimeoutError:
            answer = Answer(
                Step.FAILED,
                Reason.HTTP_TIMEOUT,
                f"no answer in {timeout:g}s (connected, but the registry or its token "
                "service did not answer)",
            )
        except FetchError as error:
            answer = Answer(Step.FAILED, error.reason, error.detail)
        except CredentialsWithheld as error:  # checked above; the client's own rule agrees
            answer = Answer(Step.FAILED, Reason.IMAGE_AUTH_MISSING, error.detail)
        elapsed = time.perf_counter() - started
        detail = f"HEAD {path}: {answer.detail}"
        if notes:
            detail += f" ({'; '.join(notes)})"
        if answer.step == Step.CHALLENGED:  # a challenge nobody answered (cannot happen)
            answer = Answer(Step.FAILED, Reason.IMAGE_AUTH_MISSING, answer.detail)
        reason = answer.reason
        if answer.step == Step.NOT_FOUND:
            reason = Reason.IMAGE_NOT_FOUND
        check = CheckResult(
            endpoint=answer.endpoint or endpoint,
            check=CheckKind.MANIFEST,
            ok=reason is None,
            reason=reason,
            detail=detail,
            phases={"processing": elapsed},
        )
        return answer, check, authorization

    async def _check_platform(
        self,
        walk: _Walk,
        reference: ImageReference,
        registry: RegistryConfig,
        host: RegistryHost,
        view: NodeView,
        authorization: Authorization | None,
    ) -> None:
        """For an index: whether it lists the node's platform (or `--platform`'s), read with a
        `GET` where that is free: never of a Docker Hub image unless `--platform` asked."""
        platform = self.platform
        if walk.media_type not in INDEX_TYPES or walk.digest is None:
            if walk.media_type is not None and walk.media_type not in INDEX_TYPES:
                walk.detail += (
                    f"; a single-platform manifest ({platform} not checked: its config says)"
                )
            return
        if reference.is_docker_hub and not self.explicit_platform:
            walk.detail += (
                f"; {platform} not checked: reading a Docker Hub index takes a GET, which counts "
                "as a pull (ask with --platform)"
            )
            return
        path = _request_path(reference, host, "manifests", walk.digest)
        headers = [("Accept", MANIFEST_ACCEPT)]
        if authorization is not None:
            headers.append(("Authorization", authorization.header))
        client = self._client(registry, host, view)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.engine.config.timeout):
                answer = await client.request(
                    "GET",
                    f"{host.address.url}{path}",
                    headers,
                    credentials=authorization is not None and authorization.account,
                )
        except (TimeoutError, FetchError, CredentialsWithheld) as error:
            detail = getattr(error, "detail", None) or "no answer in time"
            walk.detail += f"; {platform} not checked: GET of the index failed ({detail})"
            return
        if answer.status != 200:
            walk.detail += f"; {platform} not checked: GET of the index answered {answer.status}"
            return
        verdict = platform_answer(answer.body, platform)
        walk.platform = str(platform)
        walk.checks.append(
            CheckResult(
                endpoint=_endpoint(host),
                check=CheckKind.MANIFEST,
                ok=verdict.reason is None,
                reason=verdict.reason,
                detail=f"GET {path}: {verdict.detail}",
                phases={"processing": time.perf_counter() - started},
            )
        )
        if verdict.reason is not None:
            walk.reason, walk.detail = verdict.reason, verdict.detail
        else:
            walk.detail += f"; {verdict.detail}"

    def _client(self, registry: RegistryConfig, host: RegistryHost, view: NodeView) -> NodeClient:
        """A client with the host's trust; credentials over plain HTTP only to a host the node
        or the config names as plain HTTP (the runtime sends them there too)."""
        context = self.engine.ssl_context(registry, host, view)
        return NodeClient(
            view.resolver, context, view.routes, plain_http_credentials=not host.address.tls
        )

    def _refused(self, target: ImageTarget, error: ValueError) -> ImageReport:
        """A reference the runtime cannot even parse: the wrong name (cause 1)."""
        return ImageReport(
            image=target.image,
            reference=target.image,
            role=target.role,
            registry="",
            reason=Reason.IMAGE_NOT_FOUND,
            detail=f"the runtime cannot parse this reference: {error}",
            checks=(),
            finished_at=time.time(),
            source=target.source,
        )

    def _report(
        self,
        target: ImageTarget,
        reference: ImageReference,
        registry: RegistryConfig,
        walk: _Walk,
    ) -> ImageReport:
        return ImageReport(
            image=target.image,
            reference=str(reference),
            role=target.role,
            registry=registry.label,
            reason=walk.reason,
            detail=walk.detail,
            checks=tuple(walk.checks),
            finished_at=time.time(),
            host=walk.host,
            digest=walk.digest,
            media_type=walk.media_type,
            credentials=walk.offer.describe() if walk.offer is not None else None,
            platform=walk.platform,
            repository=reference.path,
            tag=reference.tag,
            docker_hub=reference.is_docker_hub,
            ecr=reference.is_ecr,
            source=target.source,
        )


def _endpoint(host: RegistryHost) -> HostPort:
    address = host.address
    return address.host_port.with_default_port(address.effective_port)


def _request_path(reference: ImageReference, host: RegistryHost, kind: str, obj: str) -> str:
    """containerd's request path: the host's API root (a mirror's path, or `override_path`'s),
    the repository, `manifests` or `blobs`, the tag or digest; and `ns=<registry>` for a host
    that is not the registry's own (`RegistryHost.isProxy`)."""
    root = host.path.rstrip("/") or ""
    path = f"{root}/{reference.path}/{kind}/{quote(obj, safe=':')}"
    own = host.address.label
    if reference.domain != own and not (
        reference.domain == "docker.io" and own == "registry-1.docker.io"
    ):
        path += f"?ns={quote(reference.domain, safe='')}"
    return path


def _host_failure(report: RegistryReport, result: HostResult) -> CheckResult:
    """The check that made a host unusable, from the registry's report."""
    others = {h.endpoint for h in report.hosts} - {result.endpoint}
    failing = [
        c
        for c in report.checks
        if not c.ok and c.reason == result.reason and c.endpoint not in others
    ]
    own = next((c for c in failing if c.endpoint == result.endpoint), None)
    if own is not None:
        return own
    if failing:
        return failing[0]
    return CheckResult(
        endpoint=result.endpoint,
        check=CheckKind.HTTP,
        ok=False,
        reason=result.reason,
        detail=f"{result.endpoint} fails its checks ({result.reason})",
    )
