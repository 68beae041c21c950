# BMC Hub: the Streamlit app and `python manage.py` in one image (see docs/OPERATIONS.md).
# BASE_IMAGE: the public python:3.11-slim, or bmc-hub-base:bookworm built from Debian's packages by
# deploy/build-base-image.sh where no registry can be pulled from. Both have python3 3.11 with venv.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app

# Only the runtime part of requirements.txt: test tools (pytest, Playwright, ruff …) stay out of the image.
COPY requirements.txt ./
# A virtual environment: Debian's system Python refuses pip installs (PEP 668); the slim image accepts both.
RUN python3 -m venv /opt/venv \
    && sed '/^# Tests and tooling/,$d' requirements.txt > /tmp/runtime-requirements.txt \
    && pip install -r /tmp/runtime-requirements.txt \
    && rm /tmp/runtime-requirements.txt

RUN groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --home-dir /app --no-create-home hub

COPY Home.py manage.py ./
COPY lib ./lib
COPY ui ./ui
COPY app_pages ./app_pages
COPY migrations ./migrations
COPY modules ./modules
COPY .streamlit/config.toml ./.streamlit/config.toml
# data/ holds the SQLite file when DATABASE_URL is not set; secrets.toml is mounted at run time, never baked in.
RUN mkdir -p /app/data/jobs && chown -R hub:hub /app/data /app/modules

# numeric, so Kubernetes' runAsNonRoot can verify it
USER 10001:10001
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read().strip() == b'ok' else 1)"]

CMD ["streamlit", "run", "Home.py", "--server.address=0.0.0.0", "--server.port=8501"]
