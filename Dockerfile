# The image every pipeline step runs in (components/image.py names it).
#
#   docker build -t ghcr.io/prednas/prednas:0.1.0 .                       # CPU torch (default)
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#                -t ghcr.io/prednas/prednas:0.1.0-cu128 .                 # CUDA torch
#   docker build --build-arg BASE_IMAGE=<a CUDA image with Python 3.11> ...  # a CUDA base
#
# CUDA wheels of torch carry their CUDA runtime, so the slim base serves GPU nodes too (the
# node provides the driver); BASE_IMAGE swaps in a CUDA base where a cluster requires one.
# No credentials are baked in: steps read S3 and MLflow settings from the pod's environment.

ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/home/prednas

LABEL org.opencontainers.image.title="prednas" \
      org.opencontainers.image.description="PredNAS pipeline steps: predictor-based neural architecture search" \
      org.opencontainers.image.licenses="Apache-2.0"

# The same pins as CI's install (Makefile); torch from the CPU (or CUDA) wheel index.
RUN python -m pip install --quiet --upgrade pip==25.3 \
 && python -m pip install --quiet --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
        torch==2.14.1 torchvision==0.29.1

WORKDIR /opt/prednas
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY prednas ./prednas
COPY components ./components
COPY pipelines ./pipelines
# The package as CI installs it (without the test tools, not editable), every dependency pinned.
RUN python -m pip install --quiet --constraint constraints.txt '.[all]' \
 && useradd --uid 10001 --user-group --create-home --home-dir /home/prednas --shell /usr/sbin/nologin prednas

USER 10001:10001
WORKDIR /home/prednas
CMD ["prednas", "--help"]
