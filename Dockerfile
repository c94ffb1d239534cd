# registry-probe's image: Debian 12's python3 and the agent's virtualenv, nothing else. No shell,
# no package manager, no pip, no compiler in the final image; a numeric non-root user.
#
#   podman build -t <your-registry>/registry-probe:0.1.0 .        (docker build works the same)
#
# Both stages are Debian 12 (bookworm) with Debian's python3 at /usr/bin/python3, so the
# virtualenv made in the first runs in the second. Each base is pinned by digest (a tag moves, a
# digest does not); override either with --build-arg, say with your own mirror's copy of it.
# The builder is pulled once, where the image is built; the nodes pull only the result, from
# your registry (daemonset.yaml never names Docker Hub).
ARG BUILDER_IMAGE=docker.io/library/debian:12-slim@sha256:90522eeb7e5923ee2b871c639059537b30521272f10ca86fdbbbb2b75a8c40cd
ARG BASE_IMAGE=gcr.io/distroless/python3-debian12:nonroot@sha256:27d2d6afcfb109e4c147449d4af957f71cb770196527d0da1d1d92b9680b0daa

FROM ${BUILDER_IMAGE} AS build
# python3-venv brings ensurepip's pip; the versions are those of the pinned Debian 12 base.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/registry-probe
# Without network access to PyPI, put wheels of the package's dependencies and of its build
# backend in ./wheelhouse (`pip wheel --wheel-dir wheelhouse . 'setuptools>=77'`) and build with
# --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheelhouse; pip reads both from the
# environment. Unset (the default), pip uses PyPI.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
COPY . /src
# The agent and its dependencies into the virtualenv, compiled to .pyc (the root filesystem is
# read-only at run time); then pip and setuptools out of it, and no cache anywhere.
RUN /opt/registry-probe/bin/pip install --no-cache-dir --disable-pip-version-check /src \
    && /opt/registry-probe/bin/pip uninstall --yes --disable-pip-version-check pip setuptools \
    && /opt/registry-probe/bin/registry-probe --help > /dev/null

FROM ${BASE_IMAGE}
COPY --from=build /opt/registry-probe /opt/registry-probe
ENV PATH=/opt/registry-probe/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="registry-probe" \
      org.opencontainers.image.description="Checks, as a node's container runtime would, that every registry it pulls from is reachable" \
      org.opencontainers.image.licenses="Apache-2.0"
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
EXPOSE 9741
ENTRYPOINT ["registry-probe"]
CMD ["run", "--host-root", "/host"]
