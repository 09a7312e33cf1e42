# syntax=docker/dockerfile:1.7
# Two images from one file, both non-root:
#   runtime (the default target): every Ray pod (head, workers, the RayJob's submitter and its
#     staging step): the project's wheel on the Ray image whose Ray and Python versions
#     pyproject.toml pins (tests/test_k8s.py checks they agree); CUDA, so it serves CPU and GPU
#     nodes alike.
#   server: the MLflow tracking server only: MLflow and its PostgreSQL/S3 drivers on a slim
#     Python image (no torch, no CUDA).
#   DOCKER_BUILDKIT=1 docker build -t unmute-bench:0.1.0 --build-arg GIT_SHA=$(git rev-parse HEAD) .
#   DOCKER_BUILDKIT=1 docker build --target server -t unmute-bench-server:0.1.0 .
# Every dependency version comes from constraints.txt; the dependency layers are cached (and
# pip's download cache kept across builds) until that file changes, so a code change or a new
# commit rebuilds only the small layers at the end.
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
ARG PYTHON_VERSION=3.11

# Stage 1: the wheel (pure Python: the code, sweeps/ and the measured unit costs).
FROM python:${PYTHON_VERSION}-slim AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY orchestrator orchestrator
COPY probes probes
COPY backbones backbones
COPY sweeps sweeps
COPY benchmarks/costs.json benchmarks/costs.json
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

# Stage 2: the MLflow server image.
FROM python:${PYTHON_VERSION}-slim AS server
COPY constraints.txt /tmp/constraints.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip install -c /tmp/constraints.txt mlflow psycopg2-binary boto3
USER 1000:100
WORKDIR /tmp

# Stage 3: the runtime image: dependencies first (cached), then the wheel, then provenance.
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-gpu AS runtime
COPY --chown=ray:users constraints.txt /tmp/constraints.txt
RUN --mount=type=cache,target=/home/ray/.cache/pip,uid=1000,gid=100 \
    python -m pip install -r /tmp/constraints.txt
COPY --from=wheel --chown=ray:users /wheels /tmp/wheels
RUN python -m pip install --no-cache-dir --no-deps /tmp/wheels/unmute_bench-*.whl \
    && rm -rf /tmp/wheels \
    && python -m orchestrator.sweep --list > /dev/null
# Provenance, last: images carry no .git, so the commit comes from the build; a new commit
# rebuilds only this layer.
ARG GIT_SHA=unknown
ENV UNMUTE_GIT_SHA=${GIT_SHA}
LABEL org.opencontainers.image.revision=${GIT_SHA}
# The Ray image's non-root user (uid 1000, group users); the manifests run as the same ids.
USER 1000:100
WORKDIR /home/ray
