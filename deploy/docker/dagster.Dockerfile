# The webserver and the daemon (one image, two commands): Dagster, its UI and the PostgreSQL
# storage only, no project code. They reach the code locations over gRPC only.
# Build from the repo root:
#   docker build -f deploy/docker/dagster.Dockerfile -t platform-dagster .
# deploy/requirements-webserver.txt pins dagster, dagster-webserver, dagster-graphql and
# dagster-postgres with every dependency at the root uv.lock's versions, with hashes and no
# editable, so plain pip in hash-checking mode installs it.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/home

RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster \
        --home-dir /opt/dagster/home --no-create-home dagster

COPY deploy/requirements-webserver.txt /tmp/requirements-webserver.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps --require-hashes --only-binary :all: \
        -r /tmp/requirements-webserver.txt \
    && /opt/venv/bin/pip check \
    && rm /tmp/requirements-webserver.txt

# The instance (PostgreSQL from DAGSTER_PG_*) and the workspace of deploy/docker-compose.yaml
# (the code servers by their service names). Compute logs: /opt/dagster/home/storage, a volume
# shared with the code servers, where the runs execute.
COPY deploy/dagster.yaml /opt/dagster/home/dagster.yaml
COPY deploy/compose-workspace.yaml /opt/dagster/workspace.yaml
RUN mkdir -p /opt/dagster/home/storage \
    && chown dagster:dagster /opt/dagster/home /opt/dagster/home/storage

USER dagster
EXPOSE 3000
# The daemon: `dagster-daemon run -w /opt/dagster/workspace.yaml`; the schema:
# `dagster instance migrate` (deploy/docker-compose.yaml runs both).
CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "/opt/dagster/workspace.yaml"]
