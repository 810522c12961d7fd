"""Column lineage across the three locations, as the session platform's runs recorded it
in its instance (``dagster/column_lineage``), and `make impact COLUMN=` on top of it."""

import functools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from platform_shared.column_lineage import COLUMN_LINEAGE, LINEAGE_GAPS, ROW_COLUMNS
from platform_shared.settings import ALERT_LOG, DAGSTER_WEBSERVER_URL
from tools import run_all

REPO = Path(__file__).resolve().parents[1]
MARTS = ["orders", "daily_revenue", "customers", "customer_cohorts", "products", "payment_health", "session_funnel"]
STAGING = [f"stg_app__{t}" for t in ("customers", "order_items", "orders", "payments", "products", "web_sessions")]
ML_TABLES = ["features/customer_features", "ml/customer_churn_scores", "ml/feature_drift"]
# The tables the platform builds today: table_assets must find each of them at least.
TABLES = [*STAGING, "int_order_items_joined", *MARTS, "sessions", *ML_TABLES]
# The materializable assets that are not tables, and what each is instead.
NOT_TABLES = {
    "ml/churn_model": "a model file (its prediction's lineage names the feature columns it reads)",
    "ml/churn_model_evaluation": "the metrics of each backtest fold",
    "ml/churn_model_champion": "the model version that scores",
}


@functools.cache
def table_assets() -> list[str]:
    """Every materializable asset of the three locations, read from their definitions (so
    that a new model or ML table is checked too, built or not), but the raw tables (their
    columns are the source's) and NOT_TABLES."""
    keys = set()
    for location in run_all.LOCATIONS:
        graph = run_all.load_location(location).resolve_asset_graph()
        keys |= {k.to_user_string() for k in graph.materializable_asset_keys}
    return sorted(k for k in keys if k.split("/")[0] != "raw" and k not in NOT_TABLES)


def _metadata(platform, key: str) -> dict:
    event = platform.instance.get_latest_materialization_event(dg.AssetKey(key.split("/")))
    assert event and event.asset_materialization, f"{key} was never materialized"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _lineage(platform, key: str) -> dict[str, list[tuple[str, str]]]:
    lineage = _metadata(platform, key)[COLUMN_LINEAGE]
    return {
        column: sorted((d.asset_key.to_user_string(), d.column_name) for d in deps)
        for column, deps in lineage.deps_by_column.items()
    }


def test_every_column_of_every_mart_and_feature_table_has_lineage(platform):
    """Every column of every table the platform built has its lineage, or is listed as
    underivable with its reason (``column_lineage_gaps``); each column it reads exists in
    the upstream asset's latest materialization. The platform's own SQL has no gap."""
    tables = table_assets()
    assert set(TABLES) <= set(tables), set(TABLES) - set(tables)
    for key in tables:
        meta = _metadata(platform, key)
        assert "dagster/column_schema" in meta, f"{key} records no column schema: is it a table? (else NOT_TABLES)"
        built = [c.name for c in meta["dagster/column_schema"].columns]
        gaps = meta.get(LINEAGE_GAPS, {})
        assert all(isinstance(reason, str) and reason for reason in gaps.values()), (key, gaps)
        lineage = _lineage(platform, key) if COLUMN_LINEAGE in meta else {}
        assert sorted([*lineage, *gaps]) == sorted(built), key
        # The rule allows a gap with its reason (a `select *` from an unknown source); the
        # platform's own SQL has none.
        assert not gaps, (key, gaps)
        for column, deps in lineage.items():
            for upstream, name in deps:
                up = _metadata(platform, upstream)
                # A table's columns, or what a model (not a table) records as its outputs.
                schema = up.get("dagster/column_schema")
                columns = [c.name for c in schema.columns] if schema else list(_lineage(platform, upstream))
                assert name in columns, f"{key}.{column} reads {upstream}.{name}, which is not among {columns}"


def test_the_model_and_its_scores_name_the_feature_columns_the_model_uses(platform):
    """ml/churn_model's prediction reads exactly the features its version was trained on;
    the scores' probability reads those and the prediction; the metrics compare the
    prediction (or the recency feature) with the label."""
    model = _metadata(platform, "ml/churn_model")
    used = sorted(("features/customer_features", c) for c in model["features"])
    assert len(used) >= 5
    assert _lineage(platform, "ml/churn_model") == {"prediction": used}
    scores = _lineage(platform, "ml/customer_churn_scores")
    assert scores["churn_probability"] == sorted([*used, ("ml/churn_model", "prediction")])
    assert scores["customer_id"] == [("features/customer_features", "customer_id")]
    evaluation = _lineage(platform, "ml/churn_model_evaluation")
    label = ("features/customer_features", "churned")
    assert evaluation["roc_auc"] == sorted([label, ("ml/churn_model", "prediction")])
    assert evaluation["recency_roc_auc"] == sorted([label, ("features/customer_features", "recency_days")])


def test_a_mart_s_lineage_is_exact(platform):
    """customers (marts/customers/customers.sql): renames, aggregates, a coalesce, a left
    join to the orders grouped by customer. The join's keys choose which orders each
    customer's aggregates read (a value), not which customers there are (a row)."""
    whose = [("orders", "customer_id"), ("stg_app__customers", "customer_id")]
    assert _lineage(platform, "customers") == {
        "customer_id": [("stg_app__customers", "customer_id")],
        "country_code": [("stg_app__customers", "country_code")],
        "signup_channel": [("stg_app__customers", "signup_channel")],
        "signed_up_at": [("stg_app__customers", "signed_up_at")],
        "first_ordered_at": sorted([("orders", "ordered_at"), *whose]),
        "last_ordered_at": sorted([("orders", "ordered_at"), *whose]),
        "order_count": whose,  # count(*): no column of its own
        "lifetime_value": sorted([("orders", "amount_paid"), *whose]),
        "lifetime_refunds": sorted([("orders", "amount_refunded"), *whose]),
        "is_repeat_buyer": whose,  # from order_count
    }
    assert _lineage(platform, "stg_app__customers")["country_code"] == [("raw/customers", "country")]
    # A feature reads the raw table's history (raw.customers_history, the same asset).
    assert _lineage(platform, "features/customer_features")["country"] == [("raw/customers", "country")]


def _impact(platform, webserver, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.impact", *args],
        cwd=REPO,
        env={**os.environ, **platform.env, DAGSTER_WEBSERVER_URL: webserver.url},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_impact_of_a_raw_column_names_every_reader_by_location(platform, webserver):
    result = _impact(platform, webserver, "raw/customers", "--column", "country", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    hit = {loc: {a["key"]: a["columns"] for a in assets} for loc, assets in report["downstream"].items()}
    # The champion's score is there when a champion other than the new model was compared.
    compared = ["champion_roc_auc"] if "champion_roc_auc" in _metadata(platform, "ml/churn_model_evaluation") else []
    assert hit == {
        "analytics_dbt": {
            "stg_app__customers": ["country_code"],
            "customers": ["country_code"],
            "dashboard/customer_value_dashboard": ["customers.country_code"],
        },
        "ml_features": {
            "features/customer_features": ["country"],
            "ml/churn_model": ["prediction"],
            # The model's metrics; not the recency baseline's, not the churn rate.
            "ml/churn_model_evaluation": sorted(["brier", *compared, "precision_at_10pct", "roc_auc"]),
            "ml/churn_model_champion": ["champion"],
            # and the champion version they name: the champion is chosen on those metrics
            "ml/customer_churn_scores": ["churn_probability", "model_version"],
            "ml/feature_drift": ["model_version", "psi"],
        },
    }
    assert report["teams"] == ["analytics", "ml"]
    assert report["no_column_lineage"] == []
    # Every other asset downstream of raw/customers reads other columns only.
    assert report["unaffected"] == []

    text = _impact(platform, webserver, "raw/customers", "--column", "country")
    assert text.returncode == 0 and text.stdout.strip().splitlines()[-1] == report["summary"]
    columns = sum(len(c) for by_asset in hit.values() for c in by_asset.values())
    assert report["summary"].startswith(
        f"raw/customers.country: {columns} columns in 9 assets downstream in 2 locations"
    )


def test_impact_of_a_column_read_by_nobody_and_of_an_unknown_column(platform, webserver):
    result = _impact(platform, webserver, "raw/orders", "--column", "updated_at", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["downstream"] == {
        "analytics_dbt": [
            {
                "key": "stg_app__orders",
                "role": "dbt model",
                "owners": ["team:analytics"],
                "columns": ["updated_at"],
                "rows_chosen_by": [],
            }
        ]
    }
    assert "orders" in report["unaffected"] and "daily_revenue" in report["unaffected"]

    unknown = _impact(platform, webserver, "raw/orders", "--column", "colour")
    assert unknown.returncode == 2
    assert "raw/orders has no column 'colour'" in unknown.stderr and "order_id" in unknown.stderr


def test_a_column_that_chooses_rows_hits_every_column_of_the_table(platform, webserver):
    """Filters, join keys and group keys are recorded apart (``column_lineage_rows``): a
    change to one changes which rows every column holds, and dropping one breaks the model."""
    # customers (marts/customers/customers.sql): no filter, and a left join to one row per
    # customer at most, which keeps every customer.
    assert _metadata(platform, "customers")[ROW_COLUMNS] == []
    result = _impact(platform, webserver, "raw/orders", "--column", "status", "--format", "json")
    assert result.returncode == 0, result.stderr
    hit = {a["key"]: a for assets in json.loads(result.stdout)["downstream"].values() for a in assets}
    # customer_cohorts leaves cancelled orders out (a filter on orders.order_status).
    assert hit["customer_cohorts"]["rows_chosen_by"] == ["orders.order_status"]
    assert hit["customer_cohorts"]["columns"] == sorted(_lineage(platform, "customer_cohorts"))
    assert hit["orders"]["rows_chosen_by"] == [] and hit["orders"]["columns"] == ["is_revenue", "order_status"]
    text = _impact(platform, webserver, "raw/orders", "--column", "status")
    assert "(every row: chosen by orders.order_status)" in text.stdout


def _copy_after(platform, webserver, tmp_path, monkeypatch, change: str) -> None:
    """A copy of the platform's source and warehouse in ``tmp_path``, the source changed by
    ``change`` (SQL), set as this test's settings (the session webserver's lineage)."""
    for name in ("app.db", "warehouse.duckdb"):
        shutil.copy(platform.root / name, tmp_path / name)
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.executescript(change)
    env = platform.env | {
        "SOURCE_DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "WAREHOUSE_PATH": str(tmp_path / "warehouse.duckdb"),
        DAGSTER_WEBSERVER_URL: webserver.url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _ingest_customers_after(platform, webserver, tmp_path, monkeypatch, change: str):
    """The ingestion of customers in a copy of the platform whose source took ``change``
    (SQL): the SchemaDrift it raises, and the copy's warehouse."""
    from platform_ingestion.audit import SchemaDrift
    from platform_ingestion.engine import ingest_table
    from platform_ingestion.loading import LoadRequest
    from platform_ingestion.resources import dlt_state_dir
    from platform_shared import Warehouse, load_catalog, load_settings

    _copy_after(platform, webserver, tmp_path, monkeypatch, change)
    settings = load_settings()
    customers = next(t for t in load_catalog(settings.catalog_path).tables if t.source == "customers")
    warehouse = Warehouse(path=str(settings.warehouse_path))
    with pytest.raises(SchemaDrift) as raised:
        ingest_table(
            customers,
            request=LoadRequest(),
            warehouse=warehouse,
            source_url=settings.source_database_url,
            pipelines_dir=dlt_state_dir(settings),
            hash_key="test-only-key",
        )
    return str(raised.value), warehouse


def test_a_dropped_source_column_fails_naming_what_reads_it_downstream(platform, webserver, tmp_path, monkeypatch):
    """The ingestion of a copy of the platform whose source dropped customers.country: the
    asset fails before any data moves, and its message names every downstream reader of
    that column, in both other locations (from the session platform's webserver)."""
    change = "alter table customers drop column country"
    message, warehouse = _ingest_customers_after(platform, webserver, tmp_path, monkeypatch, change)
    assert message.startswith("Source table 'customers': column(s) ['country'] were dropped or renamed in the source.")
    assert message.endswith("Unaffected: none (every asset downstream of raw/customers reads country).")
    assert (
        "Downstream of raw/customers.country: analytics_dbt: customers (country_code), "
        "dashboard/customer_value_dashboard (customers.country_code), stg_app__customers (country_code); "
        "ml_features: features/customer_features (country), ml/churn_model (prediction), "
    ) in message
    with warehouse.connect(read_only=True) as conn:  # the last good copy stays
        assert conn.execute("select count(country) > 0 from raw.customers").fetchall() == [(True,)]


def test_a_renamed_source_column_fails_its_run_and_the_alert_names_its_readers(
    platform, webserver, tmp_path, monkeypatch
):
    """customers.signup_channel renamed in the source of a copy of the platform: the
    ingestion location's own asset fails in a Dagster run, and the run-failure alert
    names the drift, the new column, every reader of the old one downstream (as `make
    impact` lists them) and the assets that read other columns only."""
    from platform_shared import alerts

    change = "alter table customers rename column signup_channel to channel"
    _copy_after(platform, webserver, tmp_path, monkeypatch, change)
    monkeypatch.setenv(ALERT_LOG, str(tmp_path / "alerts.log"))
    defs = run_all.load_location("ingestion")
    with dg.instance_for_test() as instance:
        job = run_all.plain_run_job(defs, [dg.AssetKey(["raw", "customers"])])
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        (failure,) = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        sensor = alerts.alert_sensors("ingestion")[0]
        sensor(
            dg.build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_event=failure.dagster_event,
                dagster_instance=instance,
                dagster_run=instance.get_run_by_id(result.run_id),
            ).for_run_failure()
        )
    (alert,) = [json.loads(line) for line in (tmp_path / "alerts.log").read_text().splitlines()]
    assert alert["failed_assets"] == ["raw/customers"]
    (error,) = alert["step_errors"]
    assert error.startswith(
        "raw__customers: Source table 'customers': column(s) ['signup_channel'] were dropped or renamed "
        "in the source (new in the source: ['channel'])."
    ), error
    assert alert["text"].endswith(error)
    report = json.loads(
        _impact(platform, webserver, "raw/customers", "--column", "signup_channel", "--format", "json").stdout
    )

    def hit(asset: dict) -> str:
        chosen = asset["rows_chosen_by"]
        return ", ".join(asset["columns"]) + (f" (every row: chosen by {', '.join(chosen)})" if chosen else "")

    readers = "; ".join(
        f"{location}: " + ", ".join(f"{a['key']} ({hit(a)})" for a in assets)
        for location, assets in report["downstream"].items()
    )
    assert set(report["downstream"]) == {"analytics_dbt", "ml_features"} and report["unaffected"] == []
    assert error.endswith(
        f"Downstream of raw/customers.signup_channel: {readers}. "
        "Unaffected: none (every asset downstream of raw/customers reads signup_channel)."
    )
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:  # the last good copy stays
        assert conn.execute("select count(signup_channel) > 0 from raw.customers").fetchall() == [(True,)]


def test_a_retyped_source_column_names_its_readers_and_the_readers_of_other_columns(
    platform, webserver, tmp_path, monkeypatch
):
    """customers.first_name declared INTEGER (the table rebuilt): the load fails before
    any data moves, naming the change, every reader of that column, and the assets
    downstream that read other columns only, as `make impact` lists them."""
    change = (
        "create table customers_new as select * from customers; drop table customers; "
        "create table customers (customer_id INTEGER NOT NULL PRIMARY KEY, email VARCHAR(200) NOT NULL, "
        "first_name INTEGER, last_name VARCHAR(100), country VARCHAR(2) NOT NULL, "
        "signup_channel VARCHAR(20) NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL); "
        "insert into customers select * from customers_new; drop table customers_new;"
    )
    message, _ = _ingest_customers_after(platform, webserver, tmp_path, monkeypatch, change)
    assert message.startswith(
        "Source table 'customers': column(s) changed type: first_name VARCHAR(100) -> INTEGER."
    ), message
    report = json.loads(
        _impact(platform, webserver, "raw/customers", "--column", "first_name", "--format", "json").stdout
    )
    readers = "; ".join(
        f"{location}: " + ", ".join(a["key"] for a in assets) for location, assets in report["downstream"].items()
    )
    assert readers and report["unaffected"]
    assert "Downstream of raw/customers.first_name: analytics_dbt: stg_app__customers (first_name)." in message
    for location, assets in report["downstream"].items():
        assert f"{location}: {assets[0]['key']} (" in message
    assert f"Unaffected (read other columns only): {', '.join(sorted(report['unaffected']))}." in message
