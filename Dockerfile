# rtasr server image. GPU (default target):
#   docker build -t rtasr .
#   docker run --gpus all -p 8000:8000 rtasr
# CPU, from the same file:
#   docker build --target cpu -t rtasr:cpu .
#   docker run -p 8000:8000 rtasr:cpu
# Arguments after the image name go to `rtasr serve`, e.g. `--model large-v3 --api-key KEY`.

ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
ARG CPU_IMAGE=ubuntu:24.04

# Healthy means serving: /healthz answers 200, or 503 while full (busy is not broken).
FROM ${CPU_IMAGE} AS cpu-base
FROM ${CUDA_IMAGE} AS cuda-base

FROM cuda-base AS gpu
ENV RTASR_DEVICE=cuda
# --- common steps (identical in both targets; tests/test_deploy.py checks) ---
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 rtasr && mkdir -p /models && chown rtasr /models
WORKDIR /opt/rtasr
COPY pyproject.toml README.md LICENSE ./
COPY rtasr ./rtasr
COPY web ./web
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .
ENV PATH=/opt/venv/bin:$PATH HF_HOME=/models PYTHONUNBUFFERED=1
USER rtasr
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import sys, http.client as h; c = h.HTTPConnection('127.0.0.1', 8000, timeout=4); c.request('GET', '/healthz'); sys.exit(c.getresponse().status not in (200, 503))"]
ENTRYPOINT ["sh", "-c", "exec rtasr serve --device \"$RTASR_DEVICE\" --host 0.0.0.0 --port 8000 \"$@\"", "rtasr"]
# --- end of common steps ---

FROM cpu-base AS cpu
ENV RTASR_DEVICE=cpu
# --- common steps (identical in both targets; tests/test_deploy.py checks) ---
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 rtasr && mkdir -p /models && chown rtasr /models
WORKDIR /opt/rtasr
COPY pyproject.toml README.md LICENSE ./
COPY rtasr ./rtasr
COPY web ./web
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .
ENV PATH=/opt/venv/bin:$PATH HF_HOME=/models PYTHONUNBUFFERED=1
USER rtasr
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import sys, http.client as h; c = h.HTTPConnection('127.0.0.1', 8000, timeout=4); c.request('GET', '/healthz'); sys.exit(c.getresponse().status not in (200, 503))"]
ENTRYPOINT ["sh", "-c", "exec rtasr serve --device \"$RTASR_DEVICE\" --host 0.0.0.0 --port 8000 \"$@\"", "rtasr"]
# --- end of common steps ---

# The default target is the last stage: put the GPU image there.
FROM gpu
