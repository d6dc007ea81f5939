# DeepZoo: one image for the API, the Celery workers, the migration step and Flower.
#
#   docker build -t deepzoo:latest .
#
# torch==2.13.0 from PyPI is a CUDA build on Linux x86_64, so the same image runs on
# GPU and CPU hosts. For a smaller CPU-only image, point TORCH_INDEX_URL at an index of
# CPU wheels (docs/deploy.md).
FROM python:3.11-slim-bookworm

# Keep TORCH_VERSION equal to the torch pin in pyproject.toml (tests/test_deploy.py checks).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=
ARG FLOWER_VERSION=2.2.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DEEPZOO_HOST=0.0.0.0 \
    DEEPZOO_PORT=8000 \
    DEEPZOO_DATA_DIR=/data

# The service never runs as root; /data (DEEPZOO_DATA_DIR) is the one place it writes.
RUN groupadd --system --gid 10001 deepzoo \
    && useradd --system --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin deepzoo \
    && mkdir -p /data \
    && chown 10001:10001 /data \
    && python -m venv /opt/venv

# torch first: the largest layer, and the one that changes least often.
RUN if [ -n "$TORCH_INDEX_URL" ]; then export PIP_INDEX_URL="$TORCH_INDEX_URL"; fi \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}"

WORKDIR /app

# The dependencies from pyproject.toml before the sources, so editing code reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt "flower==${FLOWER_VERSION}" \
    && rm /tmp/requirements.txt

# The sources stay in /app (root-owned, read-only to the service): alembic/ and
# alembic.ini are read from here by `python -m app.db.migrate`.
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info

# Jobs record the code revision in their provenance; .git is not in the image, so pass
# it at build time: docker build --build-arg DEEPZOO_REVISION="$(git rev-parse HEAD)" .
ARG DEEPZOO_REVISION=unknown
ENV DEEPZOO_REVISION=${DEEPZOO_REVISION}

USER 10001:10001

EXPOSE 8000

# Liveness only; docker-compose.yml checks /readyz (database and broker) instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DEEPZOO_PORT', '8000'), timeout=4)"]

CMD ["sh", "-c", "exec uvicorn app.main:app --host $DEEPZOO_HOST --port $DEEPZOO_PORT"]
