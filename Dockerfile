# Taleweaver's server image: the Python package with the web app built in, run as a
# non-root user. Build from the repository root:
#   docker build -t taleweaver .
# docs/deployment.md explains the settings, the compose file and the Kubernetes
# manifests in deploy/.

# --- the web app (Svelte + Vite), built into src/taleweaver/webapp ---------------------
FROM node:20-slim AS web
WORKDIR /build/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/ ./
# vite writes to ../src/taleweaver/webapp (web/vite.config.ts)
RUN mkdir -p /build/src/taleweaver && npm run --silent build

# --- the Python package and its dependencies, in a virtualenv --------------------------
FROM python:3.11-slim AS build
# llama-cpp-python (the bundled local model) compiles when no wheel fits the platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/taleweaver
WORKDIR /build
COPY pyproject.toml README.md constraints.txt ./
COPY src/ src/
COPY --from=web /build/src/taleweaver/webapp/ src/taleweaver/webapp/
RUN /opt/taleweaver/bin/pip install -c constraints.txt . \
    && test -f /opt/taleweaver/lib/python3.11/site-packages/taleweaver/webapp/index.html

# --- what runs: the virtualenv on a slim Python, nothing to compile with --------------
FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 taleweaver \
    && useradd --system --uid 10001 --gid taleweaver --home-dir /var/lib/taleweaver \
        --create-home --shell /usr/sbin/nologin taleweaver
COPY --from=build /opt/taleweaver /opt/taleweaver
ENV PATH=/opt/taleweaver/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TALEWEAVER_DATA_DIR=/var/lib/taleweaver \
    TALEWEAVER_REQUIRE_LOGIN=true
# A numeric user, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /var/lib/taleweaver
VOLUME ["/var/lib/taleweaver"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["taleweaver", "serve", "--host", "0.0.0.0", "--port", "8000"]
