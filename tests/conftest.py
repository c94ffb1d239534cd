"""Shared fixtures. `lab`: the network lab of tests/lab, built once per session.

The lab needs root, iproute2, nftables and docker-registry; where they are missing, every test
that asks for `lab` is skipped with the reason (CI runs as root with them installed).
Tests marked `slow` (minutes of waiting on timeouts) are skipped unless `--run-slow` is given.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings
from lab import Lab, missing_requirements
from lab.private import PrivateRegistries

# Hypothesis's per-example deadline is a timing assertion; machines here are noisy (speed
# targets live in bench/), so examples are bounded by count, not by time.
settings.register_profile("registry-probe", deadline=None)
settings.load_profile("registry-probe")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", help="also run tests marked slow (off by default)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", name="lab")
def lab_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The running lab (namespaces, DNS, registries, fault servers), torn down at session end."""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    running = Lab.start(tmp_path_factory.mktemp("lab"))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="session", name="private_registries")
def private_registries_fixture(lab: Lab) -> PrivateRegistries:
    """The lab's registries that want credentials (htpasswd, token auth), started once."""
    registries = PrivateRegistries(lab)
    registries.start()
    return registries
