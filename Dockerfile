# syntax=docker/dockerfile:1
# Multi-stage: dependencies from the lock file first (cached), then the source.
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app ./app
COPY alembic ./alembic
COPY alembic.ini ./
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /srv esis
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/alembic /srv/alembic
COPY --from=build /src/alembic.ini /srv/alembic.ini
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ESIS_SYNC_HOST=0.0.0.0 \
    ESIS_SYNC_PORT=8000 \
    ESIS_SYNC_DATABASE_URL=sqlite:////srv/var/esis-sync.db
WORKDIR /srv
RUN mkdir -p /srv/var && chown esis /srv/var
USER esis
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
# Migrations are an explicit step: `docker compose run --rm migrate` (esis-sync migrate).
CMD ["esis-sync", "serve"]
