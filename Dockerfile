# KFP component image for collabopt: every component of a KubeflowV2DagRunner-compiled pipeline runs
# in it (`python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...`).
#
# Base: Debian 12 (bookworm, glibc 2.36), the same as the dev machines, so the SAME uv.lock recipe
# works here: ml-metadata is overridden to 1.17.1 (manylinux2014), because ml-metadata 1.21 ships only
# manylinux_2_39 wheels that cannot load on glibc 2.36. TFDV is dropped by the lock (needs
# GLIBC_2.38). Why every pin is what it is: STACK.md at the repository root. The lock covers
# linux/x86_64 only, hence the platform.
FROM --platform=linux/amd64 python:3.11-slim-bookworm

ARG VERSION=0.1.0
ARG UV_VERSION=0.13.9
LABEL org.opencontainers.image.title="collabopt" \
      org.opencontainers.image.description="TFX components for collaborative optimization (prune, cluster, preserving QAT, INT8 TFLite, Arm Vela for Ethos-U)" \
      org.opencontainers.image.version=$VERSION

# Fashion-MNIST IDX files for the demo's FashionMnistExampleGen (/usr/share/datasets/fashion-mnist).
RUN apt-get update \
 && apt-get install -y --no-install-recommends dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/*

RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# uv installs into /opt/venv with the image's own Python 3.11 (pyproject says python-downloads=never);
# bytecode is compiled at build time (the first tfx import takes ~6 s instead of ~18 s).
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

WORKDIR /src

# Dependencies first (cached layer as long as pyproject.toml and uv.lock do not change).
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project

# Then the project itself, installed as a regular (non-editable) package into /opt/venv.
COPY . .
RUN uv sync --locked --no-dev --no-editable

# tensorflow-model-optimization needs tf_keras (Keras 2): set before TensorFlow is imported.
ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# Run from outside the source tree so `import collabopt` is the installed package.
WORKDIR /

# Fail the build, not a pipeline run, if Vela or the pinned stack cannot load here.
RUN vela --version \
 && python -c "import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor, collabopt.components"

# What KubeflowV2DagRunner-compiled specs call (they also set it as the container command, so
# `python` must be the venv's: PATH above).
ENTRYPOINT ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
