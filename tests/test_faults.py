"""Faults: each test breaks something real and checks that nothing is lost and that the
error names the cause. The run-worker and concurrency faults run under a real daemon."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from platform_shared import load_settings
from platform_shared.automation import plain_run_job
from platform_shared.demo_data import generate
from platform_shared.lineage import graphql
from platform_shared.settings import INGESTION_CATALOG, SOURCE_DATABASE_URL, WAREHOUSE_PATH
from tools import run_all
from tools import webserver as tools_webserver

REPO = Path(__file__).resolve().parents[1]


def _ingest(*tables: str) -> dg.ExecuteInProcessResult:
    defs = run_all.load_location("ingestion")
    with dg.DagsterInstance.ephemeral() as instance:
        return plain_run_job(defs, [dg.AssetKey(["raw", t]) for t in tables]).execute_in_process(
            instance=instance, raise_on_error=False
        )


def _errors(result: dg.ExecuteInProcessResult) -> str:
    out = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            out.append(error.message)
            error = error.cause
    return "\n".join(out)


def _count(warehouse: Path, table: str) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(f"select count(*) from raw.{table}").fetchall()[0][0]


@pytest.fixture
def immutable(tmp_path):
    """chattr +i: even root cannot write the path (root ignores plain permissions)."""
    marked = []

    def mark(path: Path) -> Path:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            if os.getenv("REQUIRE_IMMUTABLE_FILES") == "1":
                pytest.fail(f"REQUIRE_IMMUTABLE_FILES=1 but chattr +i failed: {done.stderr.strip()}")
            pytest.skip(
                f"chattr +i is not available here: {done.stderr.strip()}; set REQUIRE_IMMUTABLE_FILES=1 "
                "to make this a failure"
            )
        marked.append(path)
        return path

    yield mark
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)])


def test_a_read_only_warehouse_fails_before_any_work_naming_the_file(fresh_env, monkeypatch, immutable):
    for name, value in fresh_env.items():
        monkeypatch.setenv(name, value)
    warehouse = Path(fresh_env[WAREHOUSE_PATH])
    assert _ingest("customers").success
    before = warehouse.read_bytes()
    immutable(warehouse)
    result = _ingest("customers", "orders")
    assert not result.success
    assert f"The warehouse {warehouse} cannot be written" in _errors(result)
    assert not [e for e in result.all_events if e.event_type_value == "STEP_START"]  # before any work
    assert warehouse.read_bytes() == before


def test_a_warehouse_folder_that_cannot_be_created_fails_naming_it(fresh_env, tmp_path, monkeypatch, immutable):
    for name, value in fresh_env.items():
        monkeypatch.setenv(name, value)
    parent = tmp_path / "locked"
    parent.mkdir()
    immutable(parent)
    monkeypatch.setenv(WAREHOUSE_PATH, str(parent / "missing" / "warehouse.duckdb"))
    result = _ingest("customers")
    assert not result.success
    assert f"The warehouse {parent / 'missing' / 'warehouse.duckdb'} cannot be written" in _errors(result)


@pytest.fixture
def pg_source(fresh_env, postgres_database, monkeypatch):
    """The demo database in PostgreSQL, ingested once: raw.customers holds a good copy."""
    for name, value in fresh_env.items():
        monkeypatch.setenv(name, value)
    generate(postgres_database, scale=0.05)
    monkeypatch.setenv(SOURCE_DATABASE_URL, postgres_database)
    assert _ingest("customers").success
    return postgres_database, Path(fresh_env[WAREHOUSE_PATH])


def test_refused_credentials_fail_clearly_without_retry_and_keep_the_table(pg_source, monkeypatch):
    url, warehouse = pg_source
    rows = _count(warehouse, "customers")
    monkeypatch.setenv(SOURCE_DATABASE_URL, make_url(url).set(password="wrong").render_as_string(hide_password=False))
    result = _ingest("customers")
    assert not result.success
    assert "password authentication failed" in _errors(result)
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert _count(warehouse, "customers") == rows


def test_an_unreachable_source_is_retried_then_fails_and_keeps_the_table(pg_source, monkeypatch):
    url, warehouse = pg_source
    rows = _count(warehouse, "customers")
    closed = make_url(url).set(host="127.0.0.1", port=tools_webserver.free_port())
    monkeypatch.setenv(SOURCE_DATABASE_URL, closed.render_as_string(hide_password=False))
    result = _ingest("customers")
    assert not result.success
    assert "Connection refused" in _errors(result) or "connection refused" in _errors(result)
    assert any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert _count(warehouse, "customers") == rows


# --- under a real daemon -------------------------------------------------------------------

SENSORS = """{ sensorsOrError(repositorySelector: {repositoryLocationName: "%s",
  repositoryName: "__repository__"}) { ... on Sensors { results { id name } } } }"""
STOP_SENSOR = """mutation($id: String) { stopSensor(id: $id) { __typename } }"""
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


@pytest.fixture(scope="module")
def daemon(platform_factory, tmp_path_factory):
    """`dagster dev` (webserver, daemon) on a half-scale source; web_sessions streams in
    chunks of 50 rows (slow enough to kill its worker mid-load); run monitoring polls every
    5 s and frees a dead run's slot after 5 s; the automation sensors are stopped, so only
    the test's runs run."""
    root = tmp_path_factory.mktemp("daemon")
    platform = platform_factory(root, scale=0.5)
    home = Path(platform["DAGSTER_HOME"])
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 5
    config["run_monitoring"]["free_slots_after_run_end_seconds"] = 5
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    catalog = yaml.safe_load(load_settings().catalog_path.read_text())["attributes"]
    for table in catalog["tables"]:
        if table["source"] == "web_sessions":
            table["chunk_rows"] = 50
    (root / "catalog.yml").write_text(yaml.safe_dump(catalog))
    env = {**platform, INGESTION_CATALOG: str(root / "catalog.yml")}
    log = root / "dagster_dev.log"
    mp = pytest.MonkeyPatch()
    with tools_webserver.dagster_dev(env, log) as url:
        for location in ("analytics_dbt", "ml_features"):
            sensors = graphql(url, SENSORS % location)["sensorsOrError"]["results"]
            (automation,) = [x["id"] for x in sensors if x["name"] == f"{location}_automation"]
            assert (
                graphql(url, STOP_SENSOR, {"id": automation})["stopSensor"]["__typename"] == "StopSensorMutationResult"
            )
        for name, value in env.items():  # the test process reads the same instance
            mp.setenv(name, value)
        try:
            with dg.DagsterInstance.get() as instance:
                yield url, instance, Path(platform[WAREHOUSE_PATH]), log
        finally:
            mp.undo()


def _launch(url: str, location: str, *keys: str) -> str:
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": k.split("/")} for k in keys],
        }
    }
    result = graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def _finished(instance, run_ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = {r: instance.get_run_by_id(r).status.value for r in run_ids}
        if all(s in ("SUCCESS", "FAILURE", "CANCELED") for s in statuses.values()):
            return statuses
        time.sleep(2)
    raise TimeoutError(f"runs not finished in {timeout:.0f}s: {statuses}")


def _source_rows(table: str) -> int:
    engine = sa.create_engine(load_settings().source_database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"select count(*) from {table}")).scalar_one()
    engine.dispose()
    return rows


def test_five_concurrent_runs_of_three_locations_share_the_duckdb_file(daemon):
    url, instance, warehouse, log = daemon
    first = _launch(
        url,
        "ingestion",
        "raw/customers",
        "raw/products",
        "raw/orders",
        "raw/order_items",
        "raw/payments",
        "raw/web_sessions",
    )
    assert _finished(instance, [first], 600) == {first: "SUCCESS"}
    runs = [
        _launch(url, "ingestion", "raw/orders"),
        _launch(url, "ingestion", "raw/payments"),
        # The staging layer whole: its relationship tests read each other's views.
        _launch(
            url,
            "analytics_dbt",
            *[f"stg_app__{t}" for t in ("customers", "products", "orders", "order_items", "payments", "web_sessions")],
        ),
        _launch(url, "ml_features", "features/customer_features"),
        _launch(url, "ingestion", "raw/products"),
    ]
    statuses = _finished(instance, runs, 900)
    assert statuses == dict.fromkeys(runs, "SUCCESS"), statuses
    text = log.read_text()
    assert "Could not set lock" not in text and "Conflicting lock" not in text


def test_a_killed_run_worker_loses_nothing_and_frees_the_pool(daemon):
    url, instance, warehouse, log = daemon
    first = _launch(url, "ingestion", "raw/web_sessions")
    assert _finished(instance, [first], 300) == {first: "SUCCESS"}
    good = _count(warehouse, "web_sessions")

    # More rows in the source, then a reload that is killed (SIGKILL) once it is loading.
    engine = sa.create_engine(load_settings().source_database_url)
    columns = [c["name"] for c in sa.inspect(engine).get_columns("web_sessions")]
    copied = {"session_id": "session_id + 10000000", "updated_at": "'2030-01-01 00:00:00.000000'"}
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"insert into web_sessions select {', '.join(copied.get(c, c) for c in columns)} from web_sessions")
        )
    engine.dispose()
    killed = _launch(url, "ingestion", "raw/web_sessions")
    deadline = time.monotonic() + 120
    while not [
        e for e in instance.all_logs(killed) if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"
    ]:
        assert time.monotonic() < deadline, "the reload never started"
        time.sleep(0.2)
    time.sleep(0.5)  # into the load: reflecting the source, extracting 21,000 rows 50 at a time
    # The run worker and its step process (the events they emitted carry their pids).
    workers = {
        e.dagster_event.pid
        for e in instance.all_logs(killed)
        if e.dagster_event and e.dagster_event.event_type_value in ("RUN_START", "STEP_START")
    }
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert _finished(instance, [killed], 120) == {killed: "FAILURE"}, "the reload was not killed mid-load"
    assert time.monotonic() - killed_at < 60  # bounded: marked failed within a minute here
    # The daemon gives the slot back (free_slots_after_run_end_seconds: 30 in dagster.yaml,
    # 5 in this fixture).
    deadline = time.monotonic() + 120
    while killed in {
        slot.run_id for slot in instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots
    }:
        assert time.monotonic() < deadline, "the killed run still holds the warehouse slot"
        time.sleep(2)
    assert _count(warehouse, "web_sessions") == good  # readers still see the last good copy

    again = _launch(url, "ingestion", "raw/web_sessions")
    assert _finished(instance, [again], 300) == {again: "SUCCESS"}
    assert _count(warehouse, "web_sessions") == _source_rows("web_sessions") == 2 * good
