# syntax=docker/dockerfile:1
# kcp-tmc: tmc-webhook and tmc-reconciler (and tmc-certs, tmc-policy) in one image.
#
#   build    builds the project's wheel and installs it, with its runtime dependencies only (no
#            extras), into the venv /opt/kcp-tmc
#   final    the same slim Python, the venv copied in, nothing else: no pip, no compilers, no
#            sources; runs as an unprivileged user
#
# The chart picks the program with `command:` (tmc-webhook, tmc-reconciler, tmc-certs).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install "setuptools>=68" wheel
WORKDIR /src
COPY . .
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
    && python -m venv --without-pip /opt/kcp-tmc \
    && /opt/build/bin/pip --python /opt/kcp-tmc/bin/python install /dist/kcp_tmc-*.whl \
    && /opt/kcp-tmc/bin/tmc-policy --version

FROM ${PYTHON_IMAGE} AS final
LABEL org.opencontainers.image.title="kcp-tmc" \
      org.opencontainers.image.description="kcp Transparent Multi-Cluster control plane: admission webhook and reconciler" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/kcp-tmc /opt/kcp-tmc
# The base image's pip and setuptools are build tools too: the final image runs, it does not install.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel 2>/dev/null || true \
    && groupadd --gid 10001 kcp-tmc \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kcp-tmc
ENV PATH=/opt/kcp-tmc/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8443 8080
CMD ["tmc-webhook", "--help"]
