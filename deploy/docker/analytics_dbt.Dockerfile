# Code location `analytics_dbt` (platform-analytics, dbt): its gRPC code server, port 4001.
# Build from the repo root; the image takes shared/ and analytics_dbt/ only:
#   docker build -f deploy/docker/analytics_dbt.Dockerfile -t platform-analytics-dbt .
# Its environment is analytics_dbt/requirements.lock (exported from the root uv.lock), without
# dbt-core; dbt runs from an environment of its own, analytics_dbt/engine/requirements.lock
# (/opt/dbt, its bin/ on PATH after the location's), so the code server loads without
# importing dbt-core.
FROM python:3.11-slim

# Why `uv pip sync` and not `pip install --no-deps -r <lock>`: the lock exported by
# `uv export` holds hashed registry pins AND editable local paths (-e ./shared, -e ./analytics_dbt).
# pip switches to hash-checking mode as soon as one requirement has a hash, then rejects
# every editable: "The editable requirement file:///... cannot be installed when requiring
# hashes, because there is no single file to hash" (checked with pip 23.2.1 and 26.3).
# uv accepts the mix and still verifies every hash it is given (a changed hash fails the
# build): the registry packages go first under --require-hashes (a cached layer while the
# lock is unchanged), then the two editables.
# --no-sources: the members declare `platform-shared = { workspace = true }`, which only
# resolves inside the root uv workspace (not in this image); the lock pins -e ./shared.
ARG UV_VERSION=0.13.9
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/opt/dbt/bin:$PATH \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    PLATFORM_ROOT=/app \
    DAGSTER_HOME=/opt/dagster/home \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false

RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && python -m venv /opt/venv \
    && python -m venv /opt/dbt \
    && groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster \
        --home-dir /opt/dagster/home --no-create-home dagster

WORKDIR /app

# 1. Registry packages only, every one hash-checked, wheels only (the slim image has no compiler).
COPY analytics_dbt/requirements.lock analytics_dbt/requirements.lock
RUN grep -v '^-e ' analytics_dbt/requirements.lock > /tmp/registry.lock \
    && uv pip sync --require-hashes --no-build --python /opt/venv/bin/python /tmp/registry.lock \
    && rm /tmp/registry.lock
# The dbt engine: registry packages only (its lock lists no editable).
COPY analytics_dbt/engine/requirements.lock analytics_dbt/engine/requirements.lock
RUN uv pip sync --require-hashes --no-build --python /opt/dbt/bin/python analytics_dbt/engine/requirements.lock

# 2. The shared library and this location, editable, exactly as the lock lists them.
COPY shared/ shared/
COPY analytics_dbt/ analytics_dbt/
RUN uv pip sync --no-sources --python /opt/venv/bin/python analytics_dbt/requirements.lock \
    && uv pip check --python /opt/venv/bin/python

# The dbt manifest is built now (as `make setup` does), never parsed when the server loads.
# (`dbt parse` runs from /opt/dbt; dagster-dbt's preparer logs a warning that it cannot open
# an in-process dbt adapter, since this environment has no dbt-core: expected.)
# dbt writes target/ and logs/ at run time: they belong to the run user.
RUN cd analytics_dbt \
    && dagster-dbt project prepare-and-package --file platform_analytics/project.py \
    && test -s target/manifest.json \
    && mkdir -p logs \
    && chown -R dagster:dagster target logs

# The instance: runs launched by the daemon execute in this container (DefaultRunLauncher
# over gRPC). DAGSTER_PG_* come from the environment (.env, compose, a secret), never the image.
# /data: the shared volume (DuckDB warehouse, demo source, models, alert log).
# /opt/dagster/home/storage: compute logs, a volume shared with the webserver.
COPY deploy/dagster.yaml /opt/dagster/home/dagster.yaml
RUN mkdir -p /data /opt/dagster/home/storage \
    && chown dagster:dagster /data /opt/dagster/home /opt/dagster/home/storage

USER dagster
EXPOSE 4001
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4001", \
     "-m", "platform_analytics.definitions", "--location-name", "analytics_dbt"]
