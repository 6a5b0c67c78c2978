# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target cpu -t capfilt:cpu .
#   docker build --target gpu -t capfilt:gpu .
# Both run the same code as `npx capfilt`; the GPU image adds CUDA 12 + cuDNN 9 and
# onnxruntime-node's CUDA execution provider.

ARG NODE_VERSION=20.20.2

# ---- dependencies (shared) -------------------------------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# onnxruntime-node's postinstall is denied in package.json (allowScripts): the CPU binaries are
# in the npm tarball; the GPU stage installs the CUDA EP explicitly below.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# ---- CPU image ---------------------------------------------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS cpu
ENV NODE_ENV=production CAPFILT_LOG_LEVEL=info
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends redis-tools curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY config ./config
COPY models ./models
RUN mkdir -p /data/out /data/staging /models && chown -R node:node /data /models
USER node
# Workers started with `--metrics-port 9464` answer /metrics there; the dashboard service sets
# CAPFILT_HEALTH_URL to one of its public paths.
ENV CAPFILT_HEALTH_URL=http://127.0.0.1:9464/metrics
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD curl -fsS -o /dev/null "$CAPFILT_HEALTH_URL" || exit 1
ENTRYPOINT ["node", "bin/capfilt.js"]
CMD ["--help"]

# ---- GPU image ---------------------------------------------------------------------------
# onnxruntime-node 1.30's CUDA EP is built against CUDA 12.x and cuDNN 9: the runtime image with
# cuDNN provides libcudart, libcublas(Lt), libcufft, libcurand and libcudnn.
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04 AS gpu
ARG NODE_VERSION
ENV NODE_ENV=production CAPFILT_LOG_LEVEL=info DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates xz-utils redis-tools \
    && curl -fsSL "https://nodejs.org/dist/v${NODE_VERSION}/node-v${NODE_VERSION}-linux-x64.tar.xz" \
       | tar -xJ -C /usr/local --strip-components=1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 capfilt
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
# The CUDA EP binaries are not in the npm tarball: onnxruntime-node's own installer fetches the
# ones matching its version (from its release feed) when asked for cuda12.
RUN cd node_modules/onnxruntime-node && ONNXRUNTIME_NODE_INSTALL=cuda12 node ./script/install \
    && test -f bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY config ./config
COPY models ./models
RUN mkdir -p /data/out /data/staging /models && chown -R capfilt:capfilt /data /models
USER capfilt
ENV CAPFILT_HEALTH_URL=http://127.0.0.1:9464/metrics
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD curl -fsS -o /dev/null "$CAPFILT_HEALTH_URL" || exit 1
ENTRYPOINT ["node", "bin/capfilt.js"]
CMD ["worker", "--stages", "caption,filter", "--device", "cuda:0", "--metrics-port", "9464"]
