"""The analytics location on a warehouse filled by real ingestion (a copy per test)."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from platform_analytics.project import PROJECT_DIR
from platform_analytics.translator import AnalyticsTranslator
from platform_shared import load_catalog, load_settings, raw_asset_key
from platform_shared import settings as s
from tools import run_all

DBT = str(Path(sys.executable).parent / "dbt")
REPO = Path(__file__).resolve().parents[1]
# The daily models and the day each is partitioned by.
DAILY = {
    "sessions": "session_date",
    "session_funnel": "session_date",
    "daily_revenue": "order_date",
    "payment_health": "payment_date",
}


@pytest.fixture
def warehouse(platform, tmp_path, monkeypatch) -> Path:
    """A private copy of the session's warehouse, so a test may break it."""
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(platform.warehouse, copy)
    monkeypatch.setenv(s.WAREHOUSE_PATH, str(copy))
    return copy


def _query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(autouse=True)
def _own_dbt_target(tmp_path, monkeypatch):
    # dbt writes its manifest to target/; the prepared one there must stay the location's.
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt_target"))


def _dbt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DBT, *args], cwd=PROJECT_DIR, capture_output=True, text=True)


def test_a_duplicate_raw_key_fails_the_right_check_and_stops_downstream(warehouse):
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("insert into raw.orders select * from raw.orders order by order_id limit 1")
    result = run_all.run_location("analytics_dbt", dg.DagsterInstance.ephemeral())
    assert "stg_app__orders:unique_stg_app__orders_order_id" in result.failed_checks
    status = {r.asset: r.status for r in result.rows}
    assert status["stg_app__customers"] == "materialized"
    for downstream in ("orders", "daily_revenue", "customers"):
        assert status[downstream] != "materialized", downstream
    assert not result.success


def test_incremental_sessions_equal_a_full_refresh_after_late_updates_and_deletes(warehouse):
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute(
            "delete from raw.web_sessions where session_id in "
            "(select session_id from raw.web_sessions order by session_id desc limit 5)"
        )
        (now,) = conn.execute("select max(updated_at) from raw.web_sessions").fetchall()[0]
        # An update (its updated_at is now) and one that lands a day late (within the lookback).
        conn.execute(
            "update raw.web_sessions set funnel_step = 'checkout', updated_at = ? + interval 1 hour "
            "where session_id = (select min(session_id) from raw.web_sessions where funnel_step = 'cart')",
            [now],
        )
        conn.execute(
            "update raw.web_sessions set funnel_step = 'checkout', updated_at = ? - interval 1 day "
            "where session_id = (select max(session_id) from raw.web_sessions where funnel_step = 'cart')",
            [now],
        )
        conn.execute("delete from raw.web_sessions where session_id = (select min(session_id) from raw.web_sessions)")
    incremental = _dbt("run", "--select", "sessions")
    assert incremental.returncode == 0, incremental.stdout
    after_incremental = _query(warehouse, "select * from marts.sessions order by session_id")
    full = _dbt("run", "--select", "sessions", "--full-refresh")
    assert full.returncode == 0, full.stdout
    assert after_incremental == _query(warehouse, "select * from marts.sessions order by session_id")
    assert _query(warehouse, "select count(*) from marts.sessions") == _query(
        warehouse, "select count(*) from raw.web_sessions"
    )


def test_a_run_of_the_newest_days_applies_late_changes_and_deletes_of_every_day(warehouse):
    """`make run` and automation run the daily models' newest partitions only; what changed
    upstream on older days since the last build still reaches them (the tables then equal
    a full refresh), or those days would stay behind for ever."""
    with duckdb.connect(str(warehouse)) as conn:
        (now,) = conn.execute("select max(updated_at) from raw.web_sessions").fetchall()[0]
        (early,) = conn.execute("select min(session_date) from marts.sessions").fetchall()[0]
        # A session of the first day updated now, one deleted, an order of the first day and
        # the first payment deleted.
        conn.execute(
            "update raw.web_sessions set funnel_step = 'checkout', updated_at = ? + interval 1 hour "
            "where session_id = (select min(session_id) from raw.web_sessions "
            "where funnel_step = 'cart' and cast(started_at as date) = ?)",
            [now, early],
        )
        conn.execute(
            "delete from raw.web_sessions where session_id = (select max(session_id) from raw.web_sessions "
            "where cast(started_at as date) = ?)",
            [early],
        )
        (order,) = conn.execute(
            "select min(order_id) from marts.orders where order_date = (select min(order_date) from marts.orders)"
        ).fetchall()[0]
        for table in ("payments", "order_items", "orders"):
            conn.execute(f"delete from raw.{table} where order_id = ?", [order])
        conn.execute("delete from raw.payments where created_at = (select min(created_at) from raw.payments)")
    before = {t: _query(warehouse, f"select * from marts.{t} order by all") for t in DAILY}
    result = run_all.run_location("analytics_dbt", dg.DagsterInstance.ephemeral())
    assert result.success, result.failed_checks
    after = {t: _query(warehouse, f"select * from marts.{t} order by all") for t in DAILY}
    full = _dbt("run", "--select", "tag:daily", "--full-refresh")
    assert full.returncode == 0, full.stdout
    for table in DAILY:
        assert after[table] != before[table], table  # the old day changed in each
        assert after[table] == _query(warehouse, f"select * from marts.{table} order by all"), table


def test_dbt_build_works_alone_from_its_folder(warehouse):
    build = _dbt("build", "--select", "staging", "marts.finance")
    assert build.returncode == 0, build.stdout[-3000:]
    assert "Completed successfully" in build.stdout


def test_a_personal_target_builds_in_its_own_file_reading_the_shared_raw_tables(warehouse, tmp_path, monkeypatch):
    personal = tmp_path / "me.duckdb"
    monkeypatch.setenv("DBT_PERSONAL_WAREHOUSE", str(personal))
    build = _dbt("build", "--target", "personal", "--select", "+daily_revenue", "--indirect-selection", "cautious")
    assert build.returncode == 0, build.stdout[-3000:]
    assert _query(personal, "select count(*) from marts.daily_revenue") == _query(
        warehouse, "select count(*) from marts.daily_revenue"
    )


def test_selecting_a_few_models_runs_only_those(warehouse):
    from platform_analytics.definitions import defs

    picked = [dg.AssetKey(["stg_app__orders"]), dg.AssetKey(["orders"])]
    result = (
        defs()
        .resolve_implicit_global_asset_job_def()
        .execute_in_process(asset_selection=picked, instance=dg.DagsterInstance.ephemeral())
    )
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == set(picked)


def test_a_steps_next_dbt_command_parses_only_what_changed(warehouse, tmp_path):
    # This test's target folder holds no prepared parse state: the first command parses the
    # whole project, the next one starts from the state the first left (a deployment whose
    # warehouse path differs from the prepared state's profile was in the first case on
    # every run, and so was every daily run, whose days are --vars).
    from platform_analytics.definitions import defs

    job = defs().resolve_implicit_global_asset_job_def()
    for _ in range(2):
        result = job.execute_in_process(
            asset_selection=[dg.AssetKey(["stg_app__orders"])], instance=dg.DagsterInstance.ephemeral()
        )
        assert result.success
    target = tmp_path / "dbt_target"
    first, second = (p.read_text() for p in sorted(target.glob("analytics_models-*/dbt.log"), key=os.path.getmtime))
    assert "Partial parsing enabled" not in first
    assert "Partial parsing enabled, no changes found, skipping parsing" in second
    assert "Unable to do partial parsing" not in second
    assert (target / "analytics_models.partial_parse.msgpack").stat().st_size > 0


def test_a_model_builds_alone_on_a_warehouse_where_its_neighbours_were_never_built(platform, tmp_path, monkeypatch):
    # Regression: automation rebuilt stg_app__customers alone on a new warehouse, and dbt's
    # eager test selection added the relationship test from stg_app__orders, which did not
    # exist yet: the run failed (seen in `make deploy-check`).
    fresh = tmp_path / "only_customers.duckdb"
    with duckdb.connect(str(fresh)) as conn:
        conn.execute(f"attach '{platform.warehouse}' as session (read_only)")
        conn.execute("create schema raw")
        conn.execute("create table raw.customers as select * from session.raw.customers")
    monkeypatch.setenv(s.WAREHOUSE_PATH, str(fresh))
    from platform_analytics.definitions import defs

    picked = dg.AssetKey(["stg_app__customers"])
    result = (
        defs()
        .resolve_implicit_global_asset_job_def()
        .execute_in_process(asset_selection=[picked], instance=dg.DagsterInstance.ephemeral())
    )
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {picked}
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    assert _query(fresh, "select count(*) from staging.stg_app__customers") == _query(
        platform.warehouse, "select count(*) from raw.customers"
    )


def _manifest() -> dict:
    return json.loads((PROJECT_DIR / "target" / "manifest.json").read_text())


def sources_missing_from_catalog(manifest: dict, tables: set[str]) -> list[str]:
    return sorted(src["name"] for src in manifest["sources"].values() if src["name"] not in tables)


def test_every_dbt_source_is_a_catalog_table_with_the_ingestion_key():
    catalog = {t.warehouse_name for t in load_catalog(load_settings().catalog_path).tables}
    manifest = _manifest()
    assert sources_missing_from_catalog(manifest, catalog) == []
    translator = AnalyticsTranslator()
    keys = {translator.get_asset_key(src) for src in manifest["sources"].values()}
    assert keys == {raw_asset_key(t) for t in catalog}


def test_a_source_the_catalog_lacks_is_reported():
    catalog = {t.warehouse_name for t in load_catalog(load_settings().catalog_path).tables} - {"payments"}
    assert sources_missing_from_catalog(_manifest(), catalog) == ["payments"]


def test_dashboards_are_assets_of_kind_dashboard_downstream_of_their_marts():
    from platform_analytics.definitions import defs

    graph = defs().resolve_asset_graph()
    dashboards = [k for k in graph.get_all_asset_keys() if "dashboard" in graph.get(k).kinds]
    assert len(dashboards) == 4
    revenue = graph.get(dg.AssetKey(["dashboard", "revenue_dashboard"]))
    assert not revenue.is_materializable
    assert {dg.AssetKey(["daily_revenue"]), dg.AssetKey(["orders"])} <= set(revenue.parent_keys)


def test_sql_is_linted_with_sqlfluff():
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "sqlfluff"), "lint", "models"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout[-3000:]


def test_slim_ci_selects_only_what_changed_and_its_children(tmp_path):
    project = tmp_path / "analytics_dbt"
    shutil.copytree(PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "platform_analytics"))
    state = tmp_path / "state"
    # The state is the unchanged project's manifest, parsed here: analytics_dbt/target's may
    # be re-parsed meanwhile by another test's `dagster dev` with other settings.
    parsed = subprocess.run([DBT, "parse", "--target-path", str(state)], cwd=project, capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stdout
    model = project / "models" / "marts" / "product" / "products.sql"
    model.write_text(model.read_text().replace("as return_rate,", "as return_rate,  -- changed\n"))
    listed = subprocess.run(
        [
            DBT,
            "ls",
            "--resource-type",
            "model",
            "--select",
            "state:modified+",
            "--state",
            str(state),
            "--output",
            "name",
        ],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stdout
    # Only the changed model: `--output name` prints one name a line after dbt's log lines.
    names = [line for line in listed.stdout.splitlines() if line and " " not in line and not line.startswith("\x1b")]
    assert names == ["products"], listed.stdout


def backfill_three_days(
    env: dict[str, str], execute: Callable[[str], None], read: Callable[[str], pd.DataFrame]
) -> None:
    """`make backfill` of 2026-06-10 to 2026-06-12 after changes on 06-11, 06-12 and (outside
    the range) 06-20: the three days are rebuilt from upstream, every other row of the daily
    models is what it was (06-20 stays stale), and Dagster records exactly those partitions.
    ``execute`` and ``read`` run SQL on the warehouse under test (DuckDB or PostgreSQL)."""
    days = ["2026-06-10", "2026-06-11", "2026-06-12"]
    stg = "staging.stg_app__web_sessions"
    execute(
        f"update raw.web_sessions set traffic_source = 'backfill_test' "
        f"where session_id in (select session_id from {stg} where session_date in ('2026-06-11', '2026-06-20'))"
    )
    gone = read(
        f"select min(session_id) as id from {stg} where session_date = '2026-06-12' "
        f"union all select min(session_id) from {stg} where session_date = '2026-06-20'"
    )["id"].tolist()
    execute(f"delete from raw.web_sessions where session_id in ({gone[0]}, {gone[1]})")
    execute(
        "update marts.orders set amount_paid = amount_paid + 10 where order_id in "
        "(select min(order_id) from marts.orders where order_date = '2026-06-11' "
        "union all select min(order_id) from marts.orders where order_date = '2026-06-20')"
    )

    def frames() -> dict[str, pd.DataFrame]:
        out = {}
        for table, day in DAILY.items():
            frame = read(f"select * from marts.{table}")
            frame["_day"] = pd.to_datetime(frame[day]).dt.strftime("%Y-%m-%d")
            out[table] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
        return out

    before = frames()
    done = subprocess.run(
        ["make", "--no-print-directory", "backfill", f"FROM={days[0]}", f"TO={days[-1]}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = frames()
    for table in DAILY:
        outside = [f[~f["_day"].isin(days)].reset_index(drop=True) for f in (before[table], after[table])]
        assert len(outside[0]) > 0
        pd.testing.assert_frame_equal(outside[1], outside[0])  # untouched, 06-20 included
    sessions = after["sessions"]
    expected = read(f"select session_id from {stg} where session_date between '{days[0]}' and '{days[-1]}'")
    inside = sessions[sessions["_day"].isin(days)]
    assert sorted(inside["session_id"]) == sorted(expected["session_id"]) and gone[0] not in set(inside["session_id"])
    assert set(inside.loc[inside["_day"] == days[1], "traffic_source"]) == {"backfill_test"}
    assert set(inside.loc[inside["_day"] == days[0], "traffic_source"]) != {"backfill_test"}
    assert gone[1] in set(sessions["session_id"])  # deleted upstream on 06-20: outside the range, still here

    def per_day(table: str, column: str, frame: pd.DataFrame) -> dict[str, float]:
        return frame.groupby("_day")[column].sum().astype(float).to_dict()

    funnel_before, funnel_after = (
        per_day("session_funnel", "sessions", before["session_funnel"]),
        per_day("session_funnel", "sessions", after["session_funnel"]),
    )
    assert funnel_after[days[1]] == funnel_before[days[1]] and funnel_after[days[2]] == funnel_before[days[2]] - 1
    moved = after["session_funnel"][after["session_funnel"]["_day"] == days[1]]
    assert set(moved["traffic_source"]) == {"backfill_test"}
    revenue_before, revenue_after = (
        per_day("daily_revenue", "net_revenue", f) for f in (before["daily_revenue"], after["daily_revenue"])
    )
    assert revenue_after[days[1]] == pytest.approx(revenue_before[days[1]] + 10)
    assert revenue_after[days[0]] == revenue_before[days[0]]
    runs = set()
    with dg.DagsterInstance.from_config(env[s.DAGSTER_HOME]) as instance:
        for table in DAILY:
            records = instance.fetch_materializations(dg.AssetKey([table]), limit=100).records
            assert sorted(r.partition_key for r in records) == days, table
            runs.update(r.run_id for r in records)
    assert len(runs) == 1, runs  # the three days of every daily model: one run


def test_a_backfill_of_three_days_rebuilds_exactly_those_days(platform, warehouse, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **platform.env, s.WAREHOUSE_PATH: str(warehouse), s.DAGSTER_HOME: str(home)}

    def execute(sql: str) -> None:
        with duckdb.connect(str(warehouse)) as conn:
            conn.execute(sql)

    def read(sql: str) -> pd.DataFrame:
        with duckdb.connect(str(warehouse), read_only=True) as conn:
            return conn.execute(sql).df()

    backfill_three_days(env, execute, read)
