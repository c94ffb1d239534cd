#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, the package with its test extras),
# then runs lint, types and the whole test suite. This is the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."

# podman, runc and debootstrap build and run the image (tests/test_image.py); Alertmanager runs
# the inhibition example (tests/test_alertmanager_lab.py); containerd and golang-go are the real
# runtime and Go dialer the differential tests hold the probe against.
debs=(iproute2 nftables openssl docker-registry dnsmasq-base squid tinyproxy dante-server prometheus
      prometheus-blackbox-exporter prometheus-alertmanager podman runc debootstrap containerd golang-go)
missing=()
for deb in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" || missing+=("$deb")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        # policy-rc.d keeps the packages' own services from starting on the host: tests start
        # their own copies inside network namespaces.
        made_policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
            made_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
        if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    else
        echo "not root: lab packages missing (${missing[*]}); lab tests will be skipped" >&2
    fi
fi

python3 -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python3 -m pip install -q -e ".[test]"

python3 -m ruff check probe tests alerts bench
python3 -m ruff format --check probe tests alerts bench
python3 -m mypy --strict probe
python3 -m pytest "$@"
