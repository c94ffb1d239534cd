"""The command line: `registry-probe check | run | validate` (SPEC.md, "Command line").

Exit statuses: `check` 0 all passed, 1 something failed, 2 bad usage or config; `run` 0 after a
clean stop, 2 bad config; `validate` 0 valid, 2 invalid. Errors are one clear line each,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from probe import __version__
from probe.config import (
    DOCKER_HUB_REGISTRY,
    Config,
    ConfigError,
    HostPort,
    RegistryAddress,
    RegistryConfig,
    load_config,
    parse_listen,
    parse_registry_arg,
    validate_file,
)
from probe.display import describe_input, escape
from probe.duration import parse_duration
from probe.images.reference import parse_reference

if TYPE_CHECKING:
    from probe.engine import Engine
    from probe.images.check import ImageChecker, ImageTarget
    from probe.images.keyring import Keyring
    from probe.images.result import ImageReport
    from probe.node.view import NodeView
    from probe.result import RegistryReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _seconds(value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be more than zero")
    return seconds


def _registry(value: str) -> RegistryConfig:
    try:
        return parse_registry_arg(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _image(value: str) -> str:
    try:
        RegistryAddress.parse(parse_reference(value).domain)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"{describe_input(value)} is not an image reference: {escape(str(error))}"
        ) from None
    return value


def _platform(value: str) -> object:
    from probe.images.pull import parse_platform

    try:
        return parse_platform(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _listen(value: str) -> HostPort:
    try:
        return parse_listen(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--config", metavar="PATH", help="YAML configuration file")
    shared.add_argument(
        "--host-root",
        metavar="DIR",
        help="where the node's filesystem is visible (default /, /host in the DaemonSet)",
    )
    shared.add_argument(
        "--registry",
        metavar="HOST[:PORT]",
        action="append",
        type=_registry,
        default=[],
        help="a registry to check, added to the config's (repeatable; http://HOST:PORT if plain)",
    )
    shared.add_argument(
        "--timeout", type=_seconds, metavar="SECONDS", help="deadline for one check"
    )
    shared.add_argument(
        "--no-discover",
        action="store_true",
        help="ignore registries found in the node's runtime config",
    )
    parser = argparse.ArgumentParser(
        prog="registry-probe",
        description="Checks, as the node's container runtime would, that every registry it "
        "pulls from is reachable, and reads Docker Hub's pull rate limit.",
    )
    parser.add_argument("--version", action="version", version=f"registry-probe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check", parents=[shared], help="check every registry once and explain what fails"
    )
    check.add_argument("--output", choices=("text", "json"), default="text")
    check.add_argument(
        "--image",
        metavar="REF",
        action="append",
        type=_image,
        default=[],
        help="an image whose pull to check as the runtime would (repeatable; nginx, "
        "registry.example.com/team/app:1.2, ...@sha256:...); its registry is checked too, as "
        "with --registry",
    )
    check.add_argument(
        "--pull-secret",
        metavar="FILE",
        action="append",
        default=[],
        help="a .dockerconfigjson (as `kubectl create secret docker-registry` makes it) whose "
        "credentials are offered for --image as the kubelet offers a pod's imagePullSecrets "
        "(repeatable)",
    )
    check.add_argument(
        "--platform",
        metavar="OS/ARCH",
        type=_platform,
        help="the platform an image index must list (default: this node's). Checked with a GET "
        "of the index, which Docker Hub counts as a pull: for Docker Hub images only when this "
        "flag is given",
    )
    check.add_argument(
        "--sandbox-image",
        action="store_true",
        help="also check the node's sandbox (pause) image, as the agent does",
    )
    run = commands.add_parser(
        "run", parents=[shared], help="the agent: probe on an interval, serve /metrics"
    )
    run.add_argument(
        "--listen", type=_listen, metavar="ADDR:PORT", help="default 0.0.0.0:9741 (:PORT: all)"
    )
    run.add_argument("--interval", type=_seconds, metavar="SECONDS")
    run.add_argument("--once", action="store_true", help="one cycle, then exit (for tests)")
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument(
        "--web-config",
        metavar="FILE",
        help="TLS and basic auth for /metrics (exporter-toolkit's web-config.yml format)",
    )
    validate = commands.add_parser("validate", help="check a config file and say what is wrong")
    validate.add_argument("config_file", metavar="CONFIG")
    return parser


def build_config(args: argparse.Namespace) -> Config:
    """The config file (if any) with the command line's flags on top. Raises ConfigError."""
    config = load_config(args.config) if args.config else Config()
    changes: dict[str, object] = {}
    if args.host_root:
        changes["host_root"] = args.host_root
    if args.timeout is not None:
        changes["timeout"] = args.timeout
    if getattr(args, "interval", None) is not None:
        changes["interval"] = args.interval
    if getattr(args, "listen", None):
        changes["listen"] = args.listen
    if args.no_discover:
        changes["discover"] = False
    named = list(args.registry) + [_image_registry(i) for i in getattr(args, "image", [])]
    if named:
        known = {r.address.identity for r in config.registries}
        added = {r.address.identity: r for r in named if r.address.identity not in known}
        changes["registries"] = config.registries + tuple(added.values())
    config = dataclasses.replace(config, **changes)  # type: ignore[arg-type]
    if not os.path.isdir(config.host_root):
        raise ConfigError([f"--host-root {config.host_root}: not a directory"])
    return config


def _image_registry(image: str) -> RegistryConfig:
    """The registry an `--image` pulls from, named as `--registry` would name it."""
    address = RegistryAddress.parse(parse_reference(image).domain)
    if address.is_docker_hub:
        return dataclasses.replace(DOCKER_HUB_REGISTRY, source="flag")
    return RegistryConfig(address, source="flag")


def _pull_secrets(paths: list[str]) -> tuple[Keyring, ...]:
    """The `--pull-secret` files as keyrings; a file that cannot be used is a usage error."""
    from probe.dockerhub.rules import DockerConfigError
    from probe.images.check import read_keyring

    keyrings = []
    for path in paths:
        try:
            keyrings.append(read_keyring(path, f"--pull-secret {path}"))
        except OSError as error:
            raise ConfigError([f"--pull-secret {path}: {error.strerror or error}"]) from None
        except (UnicodeDecodeError, DockerConfigError) as error:
            raise ConfigError([f"--pull-secret {path}: {error}"]) from None
    return tuple(keyrings)


def _check(args: argparse.Namespace) -> int:
    from probe.engine import Engine
    from probe.images.check import ImageChecker, ImageTarget
    from probe.views.report import to_json, to_text

    engine = Engine(build_config(args))
    checker = ImageChecker(
        engine,
        pull_secrets=_pull_secrets(args.pull_secret),
        platform=args.platform,
        sandbox=args.sandbox_image,
    )
    flagged = tuple(ImageTarget(image, source="flag") for image in args.image)
    view, reports, images = asyncio.run(_check_all(engine, checker, flagged))
    problems = engine.problems(view)
    if args.output == "json":
        print(json.dumps(to_json(view.name, reports, problems, images), indent=2))
    else:
        print(to_text(view.name, reports, problems, images), end="")
    ok = all(r.ok for r in reports) and all(i.ok for i in images)
    return EXIT_OK if ok else EXIT_FAILED


async def _check_all(
    engine: Engine, checker: ImageChecker, flagged: tuple[ImageTarget, ...]
) -> tuple[NodeView, list[RegistryReport], list[ImageReport]]:
    """Every registry, then every image on the same node view (reusing its registry's report;
    a registry only an image names is probed once, for the images, and not listed)."""
    view, reports = await engine.probe_all()
    targets = checker.targets(view, flagged)
    known = {r.registry: r for r in reports}
    extra: dict[str, RegistryConfig] = {}
    for target in targets:
        with contextlib.suppress(ValueError):
            registry = checker.registry_for(parse_reference(target.image))
            if registry.label not in known:
                extra[registry.label] = registry
    async with asyncio.TaskGroup() as group:
        probes = {
            label: group.create_task(engine.probe_registry(registry, view))
            for label, registry in extra.items()
        }
    known |= {label: task.result() for label, task in probes.items()}
    async with asyncio.TaskGroup() as group:
        checks = [group.create_task(checker.check(t, view, known)) for t in targets]
    return view, reports, [task.result() for task in checks]


def _run(args: argparse.Namespace) -> int:
    from probe.agent.run import run_agent

    return run_agent(
        build_config(args),  # a bad config is refused here, before anything starts
        lambda: build_config(args),
        once=args.once,
        log_format=args.log_format,
        web_config=args.web_config,
    )


def _validate(args: argparse.Namespace) -> int:
    ok, message = validate_file(args.config_file)
    print(message, file=sys.stdout if ok else sys.stderr)
    return EXIT_OK if ok else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"check": _check, "run": _run, "validate": _validate}
    try:
        return handlers[args.command](args)
    except ConfigError as error:
        print(f"registry-probe: invalid configuration:\n{error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the outermost edge: one line, never a traceback
        if os.environ.get("REGISTRY_PROBE_DEBUG"):
            raise
        print(
            f"registry-probe: internal error: {type(error).__name__}: {error} "
            "(set REGISTRY_PROBE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_USAGE
