"""`make deploy-check`: run the team topology on this machine and exit 0 only if it works.

PostgreSQL instance (deploy/dagster.yaml) -> `dagster instance migrate` -> one gRPC code
server per location, each from its own environment (<location>/.venv, built from the
location's requirements.lock) -> the webserver and the daemon on deploy/workspace.yaml ->
load raw/customers through the webserver's GraphQL API -> wait until the daemon's
automation has rebuilt its dbt dependent -> check the runs and materializations over
GraphQL -> tear everything down (every process group, even on failure) and drop the
instance database.

Everything lives in a temporary folder: demo source database, DuckDB warehouse, models.
With WAREHOUSE=postgres the warehouse is a fresh database on the same PostgreSQL server
(separate from the instance's), dropped at the end like the instance database, and the
`warehouse_server` pool gets WAREHOUSE_CONCURRENCY slots.
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
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from platform_shared.demo_data import generate
from platform_shared.keys import raw_asset_key
from platform_shared.lineage import GraphUnavailable, graphql
from platform_shared.settings import WAREHOUSE, WAREHOUSE_CONCURRENCY, WAREHOUSE_URL
from platform_shared.workspace import locations
from tools import postgres
from tools.webserver import REPO, free_port, stop, wait_for_locations

# location -> (module, port): dg.toml's locations on the ports of deploy/workspace.yaml,
# 4000 upwards in the same order (tests/test_locations_list.py holds both to it).
CODE_SERVERS = {loc.name: (loc.module, 4000 + i) for i, loc in enumerate(locations(REPO))}
LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
} }
"""
RUN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"
PARTITIONS = """
query($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetMaterializations(limit: 10) { runId partition }
} } }
"""
LATEST = """
query($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetMaterializations(limit: 1) { runId metadataEntries { label ... on IntMetadataEntry { intValue } } }
} } }
"""

RAW_CUSTOMERS = raw_asset_key("customers")
RAW_WEB_SESSIONS = raw_asset_key("web_sessions")
_started = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", flush=True)


T = TypeVar("T")


def wait(what: str, probe: Callable[[], T | None], timeout: float, every: float = 2) -> T:
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
    return {
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username or "",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": database,
    }


def main() -> int:
    admin = postgres.admin_url()
    if not admin:
        print("deploy-check needs PostgreSQL: set TEST_POSTGRES_URL or install the postgresql package", file=sys.stderr)
        return 1
    run_id = uuid.uuid4().hex[:8]
    database = f"dagster_deploy_check_{run_id}"
    server_warehouse = os.getenv(WAREHOUSE) == "postgres"
    databases = [database] + ([f"warehouse_deploy_check_{run_id}"] if server_warehouse else [])
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for name in databases:
            conn.execute(sa.text(f'create database "{name}"'))
    say(
        f"PostgreSQL up; instance database {database}"
        + (f", warehouse database {databases[1]}" if server_warehouse else "")
    )
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory(prefix="deploy-check-") as tmp:
            env = instance_env(admin, database)
            if server_warehouse:
                env[WAREHOUSE_URL] = make_url(admin).set(database=databases[1]).render_as_string(hide_password=False)
            try:
                return _run(Path(tmp), env, procs)
            except Exception as exc:
                for log in sorted(Path(tmp).glob("*.log")):
                    print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-40:]))
                print(f"FAILED: {exc}", file=sys.stderr)
                return 1
    finally:
        for proc in procs:
            stop(proc)
        left = [p.pid for p in procs if p.poll() is None]
        with engine.connect() as conn:
            for name in databases:
                conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        engine.dispose()
        say(
            f"torn down: {len(procs)} process groups stopped"
            + (f", STILL ALIVE: {left}" if left else ", none left")
            + f"; dropped {', '.join(databases)}"
        )


def _run(tmp: Path, pg_env: dict, procs: list) -> int:
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    env = {
        **os.environ,
        **pg_env,
        "DAGSTER_HOME": str(home),
        "SOURCE_DATABASE_URL": f"sqlite:///{tmp}/app.db",
        "WAREHOUSE_PATH": str(tmp / "warehouse.duckdb"),
        "MODEL_DIR": str(tmp / "models"),
        "ALERT_LOG": str(tmp / "alerts.log"),
    }
    rows = generate(env["SOURCE_DATABASE_URL"], scale=0.1)
    say(f"demo source database: {sum(rows.values()):,} rows in {tmp / 'app.db'}")

    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [str(bin_dir / "dagster"), "instance", "migrate"], env=env, check=True, capture_output=True, text=True
    )
    say("instance schema migrated (dagster instance migrate)")
    if env.get(WAREHOUSE) == "postgres":
        # The server warehouse is not limited to one writer: its pool takes several steps.
        limit = env.get(WAREHOUSE_CONCURRENCY, "4")
        subprocess.run(
            [str(bin_dir / "dagster"), "instance", "concurrency", "set", "warehouse_server", limit],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        say(f"server warehouse {make_url(env[WAREHOUSE_URL]).database}: pool warehouse_server at {limit}")

    def start(name: str, args: list[str], extra: dict | None = None) -> subprocess.Popen:
        log = open(tmp / f"{name}.log", "w")
        proc = subprocess.Popen(
            args, cwd=REPO, env={**env, **(extra or {})}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        procs.append(proc)
        return proc

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env["DAGSTER_WEBSERVER_URL"] = url
    for location, (module, grpc_port) in CODE_SERVERS.items():
        venv = REPO / location / ".venv"
        # Its own environment only: nothing of the root .venv on PATH.
        start(
            location,
            [
                str(venv / "bin" / "dagster"),
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                str(grpc_port),
                "-m",
                module,
                "--location-name",
                location,
            ],
            {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "VIRTUAL_ENV": str(venv)},
        )
    for location, (_, grpc_port) in CODE_SERVERS.items():
        wait(
            f"the {location} code server (see {tmp / location}.log)",
            lambda p=grpc_port: (
                subprocess.run(
                    [str(bin_dir / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(p)],
                    capture_output=True,
                ).returncode
                == 0
            ),
            timeout=180,
            every=1,
        )
    say(
        "code servers up, each from its own environment: "
        + ", ".join(f"{loc} :{p}" for loc, (_, p) in CODE_SERVERS.items())
    )
    workspace = str(REPO / "deploy" / "workspace.yaml")
    webserver = start(
        "webserver", [str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(port)]
    )
    wait_for_locations(url, webserver, tmp / "webserver.log", timeout=240)
    entries = graphql(
        url,
        "{ workspaceOrError { ... on Workspace { locationEntries { name "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }",
    )
    errors = {
        e["name"]: e["locationOrLoadError"]
        for e in entries["workspaceOrError"]["locationEntries"]
        if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"
    }
    if errors:
        raise RuntimeError(f"locations failed to load: {errors}")
    say("webserver loaded the three locations from their code servers")
    start("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", workspace])
    say("daemon started")

    run_id = _launch(url, RAW_CUSTOMERS)
    status = wait("the raw/customers run to finish", lambda: _ended(url, run_id), timeout=300)
    if status != "SUCCESS":
        raise RuntimeError(f"the raw/customers run ended {status}: see {tmp / 'ingestion.log'}")
    raw = graphql(url, LATEST, {"path": RAW_CUSTOMERS.path})["assetOrError"]["assetMaterializations"][0]
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
    status = wait(f"the automation run {auto_run} to finish", lambda: _ended(url, auto_run), timeout=300)
    if status != "SUCCESS":
        raise RuntimeError(f"the automation run {auto_run} ended {status}: see {tmp / 'analytics_dbt.log'}")
    counts = _warehouse_counts(env, ["raw.customers", "staging.stg_app__customers"])
    if len(set(counts.values())) != 1 or rows_in_table not in counts.values():
        raise RuntimeError(f"the warehouse disagrees with the materializations: {counts}, {rows_in_table} rows")
    say(f"warehouse ({env.get(WAREHOUSE, 'duckdb')}): " + ", ".join(f"{t} {n} rows" for t, n in counts.items()))

    # The daily marts: once the staging view of raw/web_sessions is rebuilt, the automation
    # requests the newest three days of sessions and session_funnel (a backfill, one run).
    run_id = _launch(url, RAW_WEB_SESSIONS)
    status = wait("the raw/web_sessions run to finish", lambda: _ended(url, run_id), timeout=300)
    if status != "SUCCESS":
        raise RuntimeError(f"the raw/web_sessions run ended {status}: see {tmp / 'ingestion.log'}")

    def newest_days() -> list | None:
        found = graphql(url, PARTITIONS, {"path": ["session_funnel"]})["assetOrError"]
        return found.get("assetMaterializations") or None

    days = wait("automation to build the newest days of session_funnel", newest_days, timeout=420)
    daily_run = days[0]["runId"]  # pyright: ignore[reportIndexIssue]
    status = wait(f"the automation run {daily_run} to finish", lambda: _ended(url, daily_run), timeout=300)
    tags = {t["key"]: t["value"] for t in graphql(url, RUN, {"id": daily_run})["runOrError"]["tags"]}
    partitions = sorted(d["partition"] for d in newest_days() or [])
    if status != "SUCCESS" or "dagster/backfill" not in tags or len(partitions) != 3:
        raise RuntimeError(f"session_funnel: run {daily_run} {status}, tags {tags}, partitions {partitions}")
    say(f"automation built session_funnel {partitions[0]} to {partitions[-1]} in run {daily_run} (a backfill)")
    counts = _warehouse_counts(env, ["raw.web_sessions", "marts.sessions"])
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"marts.sessions disagrees with raw.web_sessions: {counts}")
    say("warehouse: " + ", ".join(f"{t} {n} rows" for t, n in counts.items()))
    say("OK: the team topology works")
    return 0


def _launch(url: str, key) -> str:
    """Launch a plain load of one raw table (its reconciliation check runs on its own
    schedule); returns the run's id."""
    params = {
        "selector": {
            "repositoryLocationName": "ingestion",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": key.path}],
            "assetCheckSelection": [],
        }
    }
    launched = graphql(url, LAUNCH, {"params": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launching {key.to_user_string()} failed: {launched}")
    say(f"launched {key.to_user_string()}: run {launched['run']['runId']}")
    return launched["run"]["runId"]


def _ended(url: str, run_id: str) -> str | None:
    """The run's status once it has ended, else None."""
    status = graphql(url, RUN, {"id": run_id})["runOrError"]["status"]
    return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None


def _warehouse_counts(env: dict, tables: list[str]) -> dict[str, int]:
    """Rows of each table, read straight from the warehouse the code servers wrote."""
    if env.get(WAREHOUSE) == "postgres":
        engine = sa.create_engine(env[WAREHOUSE_URL])
        with engine.connect() as conn:
            counts = {t: conn.execute(sa.text(f"select count(*) from {t}")).scalar_one() for t in tables}
        engine.dispose()
        return counts
    import duckdb

    # Automation may be writing the file for the next models (DuckDB has one writer, and a
    # reader in another process fails meanwhile): retry until the writer is done.
    for attempt in range(60):
        try:
            with duckdb.connect(env["WAREHOUSE_PATH"], read_only=True) as conn:
                return {t: conn.execute(f"select count(*) from {t}").fetchall()[0][0] for t in tables}
        except duckdb.IOException:
            if attempt == 59:
                raise
            time.sleep(2)
    raise AssertionError("unreachable: the last attempt returns or raises")


if __name__ == "__main__":
    sys.exit(main())
