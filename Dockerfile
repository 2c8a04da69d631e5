# streamserve with the anomaly plugin and its default model, as one image.
#
#   docker build -t streamserve:0.1.0 .
#   docker run --rm -p 50051:50051 -p 8081:8081 streamserve:0.1.0
#
# Serves configs/container.yaml (copied to /etc/streamserve/server.yaml): plaintext gRPC on 50051,
# a health-only port on 8081, metrics on 9090, the model from /models/anomaly (version 1 is baked in
# below; mount a volume over /models/anomaly to serve your own). See docs/deploy.md.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Everything goes into one virtualenv, copied whole into the runtime stage.
RUN python -m venv /opt/streamserve
ENV PATH=/opt/streamserve/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY framework ./framework
COPY plugins/anomaly ./plugins/anomaly
COPY plugins/oip ./plugins/oip
COPY plugins/tfserving ./plugins/tfserving
# Not editable: the runtime stage has no /src. The plugin's "streamserve" requirement is met by the
# core installed in the same command.
RUN pip install /src /src/plugins/anomaly /src/plugins/oip /src/plugins/tfserving

# Bake the default model in at build time with the plugin's own trainer (seed 0, synthetic data),
# so the container starts serving without training anything. A step of its own, so the build
# log shows training apart from installing.
# hadolint ignore=DL3059
RUN streamserve-anomaly train --out /models/anomaly/1

# Compile the anomaly plugin's per-point steps (Numba) into the package's __pycache__ now: at run time
# the root filesystem is read-only and a container would otherwise compile them at every start.
# hadolint ignore=DL3059
RUN python -c "import streamserve_anomaly.online, streamserve_anomaly.normalise"


FROM python:3.11-slim

ENV PATH=/opt/streamserve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=1 \
    HOME=/tmp \
    STREAMSERVE_HOME=/tmp/streamserve

# A fixed numeric uid, so Kubernetes can check runAsNonRoot against the image.
RUN groupadd --system --gid 10001 streamserve \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin streamserve

COPY --from=build /opt/streamserve /opt/streamserve
COPY --from=build /models /models
COPY configs/container.yaml /etc/streamserve/server.yaml

USER 10001:10001

# 50051: gRPC (plugin services, health, reflection); 8081: plaintext health only; 9090: /metrics.
EXPOSE 50051 8081 9090

# SIGTERM drains: health NOT_SERVING, new calls refused, open calls get shutdown_grace_seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["streamserve"]
CMD ["serve", "--config", "/etc/streamserve/server.yaml"]
