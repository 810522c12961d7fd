"""PostgreSQL as the warehouse (WAREHOUSE=postgres), end to end at a tiny scale: the
same source as the DuckDB platform of this session, `make run`'s tool in its own
process, then every layer compared with the DuckDB build."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from platform_ingestion import direct
from platform_shared import load_catalog, load_settings
from platform_shared import settings as platform_settings
from platform_shared.column_lineage import COLUMN_LINEAGE, LINEAGE_GAPS, ROW_COLUMNS
from tests.test_analytics import backfill_three_days
from tests.test_column_lineage import TABLES as LINEAGE_TABLES
from tests.test_column_lineage import table_assets
from tests.test_end_to_end import assert_raw_equals_source

REPO = Path(__file__).resolve().parents[1]

MARTS = [
    "orders",
    "daily_revenue",
    "customers",
    "customer_cohorts",
    "products",
    "payment_health",
    "sessions",
    "session_funnel",
]
# Each location's assets: key -> (upstream keys, pool), as the code location loads them.
GRAPH = """
import json, sys
from tools import run_all
graph = {}
for location in run_all.LOCATIONS:
    for node in run_all.load_location(location).resolve_asset_graph().asset_nodes:
        if node.is_materializable:
            graph[node.key.to_user_string()] = [sorted(k.to_user_string() for k in node.parent_keys),
                                                sorted(node.pools)]
print(json.dumps(graph))
"""


def _env(platform, **extra) -> dict[str, str]:
    return {**os.environ, **platform.env, **extra}


def _pg_env(platform, url: str, root: Path) -> dict[str, str]:
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return _env(
        platform,
        **{
            platform_settings.WAREHOUSE: "postgres",
            platform_settings.WAREHOUSE_URL: url,
            platform_settings.SOURCE_DATABASE_URL: f"sqlite:///{root / 'app.db'}",
            platform_settings.MODEL_DIR: str(root / "models"),
            platform_settings.DAGSTER_HOME: str(home),
            platform_settings.WAREHOUSE_PATH: str(root / "unused.duckdb"),
        },
    )


def _run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.run_all", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def pg_platform(platform, postgres_admin_url, tmp_path_factory):
    """The session's platform built again into a fresh PostgreSQL database (its own copy of
    the source, instance and model folder); its URL and env."""
    root = tmp_path_factory.mktemp("pg_warehouse")
    shutil.copy(make_url(platform.source_url).database, root / "app.db")
    name = f"wh_{os.getpid()}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        conn.execute(sa.text(f'create database "{name}"'))
    url = make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    env = _pg_env(platform, url, root)
    done = _run(env)
    yield url, env, done
    with admin.connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()


def _pg(url: str, sql: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text(sql), conn)
    finally:
        engine.dispose()


def _duck(platform, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(platform.warehouse), read_only=True) as conn:
        return conn.execute(sql).df()


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal up to column types (DuckDB and PostgreSQL drivers return different ones)."""

    def norm(df):
        df = df.copy()
        for c in df.columns:
            if df[c].dtype == object and df[c].map(lambda v: type(v).__name__ == "Decimal").any():
                df[c] = df[c].astype(float)
            first = df[c].dropna().iloc[0] if df[c].notna().any() else None
            if isinstance(first, (bool, np.bool_)):  # nullable booleans: None, NA or NaN
                df[c] = [float(v) if pd.notna(v) else np.nan for v in df[c]]
            elif pd.api.types.is_numeric_dtype(df[c]):
                df[c] = df[c].astype(float)
            if pd.api.types.is_datetime64_any_dtype(df[c]) or isinstance(first, (date, datetime)):
                df[c] = pd.to_datetime(df[c], utc=True)
        return df.sort_values(list(df.columns)).reset_index(drop=True)

    pd.testing.assert_frame_equal(norm(a), norm(b), check_dtype=False, check_exact=False, rtol=1e-9)


def test_every_asset_materializes_and_every_dbt_test_passes(pg_platform):
    _, _, done = pg_platform
    assert "OK: 27 assets in 3 locations" in done.stdout, done.stdout[-5000:] + done.stderr[-3000:]
    # Every check passed: the dbt tests and the ML drift check, as on DuckDB (tests/test_ml.py).
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED CHECK")]
    assert failed == []


@pytest.mark.parametrize("table", [t.warehouse_name for t in load_catalog(load_settings().catalog_path).tables])
def test_raw_table_equals_its_source(pg_platform, platform, table):
    url, env, _ = pg_platform
    # The key the PostgreSQL platform made beside its (unused) DuckDB path.
    key = (Path(env[platform_settings.WAREHOUSE_PATH]).parent / "pii_hash.key").read_text().strip()
    assert_raw_equals_source(
        env[platform_settings.SOURCE_DATABASE_URL], None, table, read=lambda q: _pg(url, q), hash_key=key
    )


def test_marts_and_features_equal_the_duckdb_build(pg_platform, platform):
    url, _, _ = pg_platform
    for mart in MARTS:
        duck = _duck(platform, f"select * from marts.{mart}")
        assert len(duck) > 0, mart
        _same(_pg(url, f"select * from marts.{mart}"), duck)
    features = "select * from features.customer_features"
    _same(_pg(url, features), _duck(platform, features))
    scores = _pg(url, "select * from ml.customer_churn_scores")
    assert scores["customer_id"].is_unique and scores["churn_probability"].between(0, 1).all()


def test_column_lineage_is_the_same_with_either_warehouse(pg_platform, platform):
    """Every table's lineage (each column's reads, and the columns that choose its rows):
    the dbt models' from SQL compiled for PostgreSQL (its dialect), the features' and the
    ML tables', equal those of the DuckDB build, with no gap."""
    _, env, _ = pg_platform

    def lineage(instance: dg.DagsterInstance) -> dict:
        out = {}
        tables = table_assets()
        assert set(LINEAGE_TABLES) <= set(tables)
        for key in tables:
            event = instance.get_latest_materialization_event(dg.AssetKey(key.split("/")))
            meta = event.asset_materialization.metadata
            assert LINEAGE_GAPS not in meta, (key, meta[LINEAGE_GAPS])
            out[key] = {
                column: sorted((d.asset_key.to_user_string(), d.column_name) for d in deps)
                for column, deps in meta[COLUMN_LINEAGE].value.deps_by_column.items()
            }
            out[key]["(rows)"] = meta[ROW_COLUMNS].value if ROW_COLUMNS in meta else None  # (ML tables name none)
        return out

    with dg.DagsterInstance.from_config(env[platform_settings.DAGSTER_HOME]) as instance:
        assert lineage(instance) == lineage(platform.instance)


def test_make_impact_of_a_column_on_the_server_warehouse(pg_platform):
    """`make impact ASSET=raw/orders COLUMN=status` on the server warehouse's instance (a
    webserver of its own): what tests/test_column_lineage.py finds on the DuckDB build."""
    _, env, _ = pg_platform
    from tools.webserver import webserver as start

    with start(REPO / "workspace.yaml", env=env) as url:
        done = subprocess.run(
            [sys.executable, "-m", "tools.impact", "raw/orders", "--column", "status", "--format", "json"],
            cwd=REPO, env={**env, platform_settings.DAGSTER_WEBSERVER_URL: url},
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    hit = {a["key"]: a for assets in json.loads(done.stdout)["downstream"].values() for a in assets}
    assert hit["customer_cohorts"]["rows_chosen_by"] == ["orders.order_status"]
    assert hit["orders"]["rows_chosen_by"] == [] and hit["orders"]["columns"] == ["is_revenue", "order_status"]


def test_the_global_graph_is_the_same_with_either_warehouse(pg_platform, platform):
    _, env, _ = pg_platform
    duck = json.loads(
        subprocess.run(
            [sys.executable, "-c", GRAPH], cwd=REPO, env=_env(platform), capture_output=True, text=True, check=True
        ).stdout
    )
    pg = json.loads(
        subprocess.run(
            [sys.executable, "-c", GRAPH], cwd=REPO, env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    assert {k: deps for k, (deps, _) in pg.items()} == {k: deps for k, (deps, _) in duck.items()}
    # Only the pool differs: one DuckDB writer at a time, the server's own limit otherwise.
    assert {p for _, pools in duck.values() for p in pools} == {"warehouse"}
    assert {p for _, pools in pg.values() for p in pools} == {"warehouse_server"}


def test_updates_and_hard_deletes_reach_the_server_warehouse(pg_platform, platform):
    url, env, _ = pg_platform
    source = make_url(env[platform_settings.SOURCE_DATABASE_URL]).database
    with sqlite3.connect(source) as conn:
        conn.execute(
            "update web_sessions set funnel_step = 'purchase', updated_at = '2031-01-01 00:00:00' "
            "where session_id = (select min(session_id) from web_sessions)"
        )
        conn.execute("delete from web_sessions where session_id = (select max(session_id) from web_sessions)")
        # A customer with history: one updated, one deleted (its history keeps it, retired).
        conn.execute("update customers set country = 'ZZ', updated_at = '2031-01-01 00:00:00' where customer_id = 3")
        conn.execute("delete from customers where customer_id = 5")
    before = len(_pg(url, "select session_id from raw.web_sessions"))
    done = _run(env, "--location", "ingestion")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    key = (Path(env[platform_settings.WAREHOUSE_PATH]).parent / "pii_hash.key").read_text().strip()
    for table in ("web_sessions", "customers"):
        assert_raw_equals_source(
            env[platform_settings.SOURCE_DATABASE_URL], None, table, read=lambda q: _pg(url, q), hash_key=key
        )
    assert len(_pg(url, "select session_id from raw.web_sessions")) == before - 1

    def history(cid):
        sql = (
            f"select country, valid_to is null as current from raw.customers_history "
            f"where customer_id = {cid} order by valid_from"
        )
        return list(_pg(url, sql).itertuples(index=False))

    assert [bool(v.current) for v in history(3)] == [False, True] and history(3)[-1].country == "ZZ"
    assert [bool(v.current) for v in history(5)] == [False]
    # The hourly run merged the changes without a dlt pipeline, on the server too.
    with dg.DagsterInstance.from_config(env[platform_settings.DAGSTER_HOME]) as instance:
        for table in ("web_sessions", "customers"):
            event = instance.get_latest_materialization_event(dg.AssetKey(["raw", table]))
            assert event.asset_materialization.metadata["backend"].value == direct.BACKEND


def test_a_backfill_of_three_days_rebuilds_exactly_those_days_on_the_server_warehouse(pg_platform, tmp_path):
    # Last in this module: it changes the warehouse the tests above compare.
    url, env, _ = pg_platform
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")

    def execute(sql: str) -> None:
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(sql))
        finally:
            engine.dispose()

    backfill_three_days({**env, platform_settings.DAGSTER_HOME: str(home)}, execute, lambda sql: _pg(url, sql))
