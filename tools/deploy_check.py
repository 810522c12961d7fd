"""`make deploy-check`: run the team topology on this machine and exit 0 only if it works.

PostgreSQL instance (deploy/dagster.yaml) -> `dagster instance migrate` -> one gRPC code
server per location, each from its own environment (<location>/.venv, built from the
location's requirements.lock) -> the webserver and the daemon on deploy/workspace.yaml ->
load raw/customers through the webserver's GraphQL API -> wait until the daemon's
automation has rebuilt its dbt dependent -> check the runs and materializations over
GraphQL -> tear everything down (every process group, even on failure) and drop the
instance database.

Everything lives in a temporary folder: demo source database, DuckDB warehouse, models.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import postgres  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from platform_shared.demo_data import generate  # noqa: E402
from platform_shared.lineage import GraphUnavailable, graphql  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from webserver import REPO, free_port, stop, wait_for_locations  # noqa: E402

CODE_SERVERS = {  # location -> (module, port in deploy/workspace.yaml)
    "ingestion": ("platform_ingestion.definitions", 4000),
    "analytics_dbt": ("platform_analytics.definitions", 4001),
    "ml_features": ("platform_ml.definitions", 4002),
}
LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
} }
"""
RUN = 'query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }'
LATEST = """
query($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetMaterializations(limit: 1) { runId metadataEntries { label ... on IntMetadataEntry { intValue } } }
} } }
"""

_started = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", flush=True)


def wait(what: str, probe: Callable[[], object], timeout: float, every: float = 2) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(GraphUnavailable):
            found = probe()
            if found:
                return found
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


def instance_env(admin_url: str, database: str) -> dict[str, str]:
    url = make_url(admin_url)
    return {"DAGSTER_PG_HOST": url.host or "127.0.0.1", "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_USER": url.username, "DAGSTER_PG_PASSWORD": url.password or "",
            "DAGSTER_PG_DB": database}


def main() -> int:
    admin = postgres.admin_url()
    if not admin:
        print("deploy-check needs PostgreSQL: set TEST_POSTGRES_URL or install the postgresql package",
              file=sys.stderr)
        return 1
    database = f"dagster_deploy_check_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'create database "{database}"'))
    say(f"PostgreSQL up; instance database {database}")
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory(prefix="deploy-check-") as tmp:
            try:
                return _run(Path(tmp), instance_env(admin, database), procs)
            except Exception as exc:
                for log in sorted(Path(tmp).glob("*.log")):
                    print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-15:]))
                print(f"FAILED: {exc}", file=sys.stderr)
                return 1
    finally:
        for proc in procs:
            stop(proc)
        left = [p.pid for p in procs if p.poll() is None]
        with engine.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{database}" with (force)'))
        engine.dispose()
        say(f"torn down: {len(procs)} process groups stopped"
            + (f", STILL ALIVE: {left}" if left else ", none left") + f"; dropped {database}")


def _run(tmp: Path, pg_env: dict, procs: list) -> int:
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    env = {**os.environ, **pg_env, "DAGSTER_HOME": str(home),
           "SOURCE_DATABASE_URL": f"sqlite:///{tmp}/app.db", "WAREHOUSE_PATH": str(tmp / "warehouse.duckdb"),
           "MODEL_DIR": str(tmp / "models"), "ALERT_LOG": str(tmp / "alerts.log")}
    rows = generate(env["SOURCE_DATABASE_URL"], scale=0.1)
    say(f"demo source database: {sum(rows.values()):,} rows in {tmp / 'app.db'}")

    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "dagster"), "instance", "migrate"], env=env, check=True,
                   capture_output=True, text=True)
    say("instance schema migrated (dagster instance migrate)")

    def start(name: str, args: list[str], extra: dict | None = None) -> subprocess.Popen:
        log = open(tmp / f"{name}.log", "w")
        proc = subprocess.Popen(args, cwd=REPO, env={**env, **(extra or {})}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env["DAGSTER_WEBSERVER_URL"] = url
    for location, (module, grpc_port) in CODE_SERVERS.items():
        venv = REPO / location / ".venv"
        # Its own environment only: nothing of the root .venv on PATH.
        start(location, [str(venv / "bin" / "dagster"), "code-server", "start", "-h", "127.0.0.1",
                         "-p", str(grpc_port), "-m", module, "--location-name", location],
              {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "VIRTUAL_ENV": str(venv)})
    for location, (_, grpc_port) in CODE_SERVERS.items():
        wait(f"the {location} code server (see {tmp / location}.log)", lambda p=grpc_port: subprocess.run(
            [str(bin_dir / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(p)],
            capture_output=True).returncode == 0, timeout=180, every=1)
    say("code servers up, each from its own environment: "
        + ", ".join(f"{loc} :{p}" for loc, (_, p) in CODE_SERVERS.items()))
    workspace = str(REPO / "deploy" / "workspace.yaml")
    webserver = start("webserver", [str(bin_dir / "dagster-webserver"), "-w", workspace,
                                    "-h", "127.0.0.1", "-p", str(port)])
    wait_for_locations(url, webserver, tmp / "webserver.log", timeout=240)
    entries = graphql(url, "{ workspaceOrError { ... on Workspace { locationEntries { name "
                           "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
    errors = {e["name"]: e["locationOrLoadError"] for e in entries["workspaceOrError"]["locationEntries"]
              if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"}
    if errors:
        raise RuntimeError(f"locations failed to load: {errors}")
    say("webserver loaded the three locations from their code servers")
    start("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", workspace])
    say("daemon started")

    params = {"selector": {"repositoryLocationName": "ingestion", "repositoryName": "__repository__",
                           "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["raw", "customers"]}]}}
    launched = graphql(url, LAUNCH, {"params": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launching raw/customers failed: {launched}")
    run_id = launched["run"]["runId"]
    say(f"launched raw/customers: run {run_id}")
    status = wait("the raw/customers run to finish",
                  lambda: graphql(url, RUN, {"id": run_id})["runOrError"]["status"] in ("SUCCESS", "FAILURE")
                  and graphql(url, RUN, {"id": run_id})["runOrError"]["status"], timeout=300)
    if status != "SUCCESS":
        raise RuntimeError(f"the raw/customers run ended {status}: see {tmp / 'ingestion.log'}")
    raw = graphql(url, LATEST, {"path": ["raw", "customers"]})["assetOrError"]["assetMaterializations"][0]
    rows_in_table = {m["label"]: m.get("intValue") for m in raw["metadataEntries"]}.get("dagster/row_count")
    say(f"raw/customers materialized by {run_id}: {rows_in_table} rows")

    def dbt_run() -> str | None:
        found = graphql(url, LATEST, {"path": ["stg_app__customers"]})["assetOrError"]
        return (found.get("assetMaterializations") or [{}])[0].get("runId")

    auto_run = wait("automation to rebuild stg_app__customers", dbt_run, timeout=300)
    tags = {t["key"]: t["value"] for t in graphql(url, RUN, {"id": auto_run})["runOrError"]["tags"]}
    if tags.get("dagster/sensor_name") != "analytics_dbt_automation":
        raise RuntimeError(f"stg_app__customers was not rebuilt by automation: run {auto_run}, tags {tags}")
    say(f"automation rebuilt stg_app__customers in run {auto_run} (analytics_dbt code server)")
    say("OK: the team topology works")
    return 0


if __name__ == "__main__":
    sys.exit(main())
