# The image every pod runs (Ray head and workers, RayJob submitter, staging Job, MLflow server):
# the project's wheel on the Ray image whose Ray and Python versions pyproject.toml pins
# (tests/test_k8s.py checks they agree). CUDA variant: the same image serves CPU and GPU nodes.
#   docker build -t unmute-bench:0.1.0 --build-arg GIT_SHA=$(git rev-parse HEAD) .
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311

# Stage 1: build the wheel (code + the sweeps/ folder as package data).
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-gpu AS wheel
WORKDIR /home/ray/src
COPY --chown=ray:users pyproject.toml setup.py README.md ./
COPY --chown=ray:users orchestrator orchestrator
COPY --chown=ray:users probes probes
COPY --chown=ray:users backbones backbones
COPY --chown=ray:users sweeps sweeps
RUN python -m pip wheel --no-deps --wheel-dir /home/ray/wheels .

# Stage 2: install it (with the MLflow server's PostgreSQL and S3 drivers) on a clean Ray image.
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-gpu
ARG GIT_SHA=unknown
COPY --from=wheel --chown=ray:users /home/ray/wheels /tmp/wheels
RUN python -m pip install --no-cache-dir "$(ls /tmp/wheels/unmute_bench-*.whl)[server]" \
    && rm -rf /tmp/wheels \
    && python -m orchestrator.sweep --list > /dev/null
# Provenance: images carry no .git, so the commit comes from the build.
ENV UNMUTE_GIT_SHA=${GIT_SHA}
# The Ray image's non-root user (uid 1000, group users); the manifests run as the same ids.
USER 1000:100
WORKDIR /home/ray
