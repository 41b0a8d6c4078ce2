# syntax=docker/dockerfile:1
# Multi-stage: dependencies from the lock file first (cached), then the source.
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
# The console speaks Dutch and English only: Babel's data for its other 1,100 locales (35 MB)
# stays out of the image. The image test reads a console page in both languages.
RUN find /opt/venv/lib/python3*/site-packages/babel/locale-data -type f \
      ! -name root.dat ! -name nl.dat ! -name 'nl_*.dat' ! -name en.dat ! -name 'en_*.dat' \
      -delete
COPY app ./app
COPY fake_esis ./fake_esis
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /srv esis
# The migrations are package data (app/migrations), inside the venv like the rest of the app.
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ESIS_SYNC_HOST=0.0.0.0 \
    ESIS_SYNC_PORT=8000 \
    ESIS_SYNC_DATABASE_URL=sqlite:////srv/var/esis-sync.db
WORKDIR /srv
RUN mkdir -p /srv/var && chown esis /srv/var
USER esis
EXPOSE 8000
# Healthy means ready: the database is reachable and its schema is at the head (/readyz).
# Failures in the first 120 s (start-up on a busy host) do not count; a success counts at once.
# The port is the one the container serves on (ESIS_SYNC_PORT), also on a host network.
HEALTHCHECK --interval=5s --timeout=4s --start-period=120s --retries=3 \
  CMD python -c "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"ESIS_SYNC_PORT\", \"8000\")}/readyz', timeout=4).status == 200 else 1)"
# Migrations are an explicit step: `docker compose run --rm migrate` (esis-sync migrate).
CMD ["esis-sync", "serve"]
