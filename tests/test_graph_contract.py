"""`make check` and `make impact` over the real webserver and its GraphQL API."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from platform_shared import lineage, load_catalog, load_settings
from platform_shared.settings import DAGSTER_WEBSERVER_URL, INGESTION_CATALOG
from tools import column_contract
from tools.check_graph import column_problems, problems

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"tools.{name}", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        # A tool that starts its own webserver queues behind the suite's other workspace
        # loads (tools.webserver.one_load_at_a_time): a loaded CI machine needed over 300 s.
        timeout=1200,
    )


def test_the_real_workspace_keeps_the_contract(webserver):
    graph = lineage.fetch_graph(webserver.url)
    catalog = [f"raw/{t}" for t in ("customers", "products", "orders", "order_items", "payments", "web_sessions")]
    assert problems(graph, catalog) == ([], [])
    assert {n.location for n in graph.nodes} == {"ingestion", "analytics_dbt", "ml_features"}
    assert column_problems(graph, lineage.fetch_columns(webserver.url)) == []


def test_a_raw_column_missing_from_the_last_load_fails_the_column_contract(webserver):
    """The platform's recorded lineage against a last load of raw/customers without country
    (as when the catalog excludes it or the source dropped it)."""
    graph = lineage.fetch_graph(webserver.url)
    columns = lineage.fetch_columns(webserver.url)
    columns.schema["raw/customers"] = [c for c in columns.schema["raw/customers"] if c != "country"]
    assert column_problems(graph, columns) == [
        "features/customer_features (ml_features): column country reads raw/customers.country, "
        "which raw/customers (ingestion) does not have in its latest materialization",
        "stg_app__customers (analytics_dbt): column country_code reads raw/customers.country, "
        "which raw/customers (ingestion) does not have in its latest materialization",
    ]


@pytest.fixture(scope="module")
def broken_check(platform, tmp_path_factory) -> subprocess.CompletedProcess:
    """`make check` on a workspace with a rogue fourth location and a catalog that lost
    payments, excludes customers.country and gained a table nothing reads (one webserver
    start for all the cases)."""
    tmp = tmp_path_factory.mktemp("broken")
    catalog = yaml.safe_load(load_settings().catalog_path.read_text())["attributes"]
    catalog["tables"] = [t for t in catalog["tables"] if t["source"] != "payments"]
    catalog["tables"].append({"source": "audit_log", "primary_key": "id"})
    customers = next(t for t in catalog["tables"] if t["source"] == "customers")
    customers.setdefault("columns", {})["exclude"] = ["country"]
    (tmp / "catalog.yml").write_text(yaml.safe_dump(catalog))
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    for name in ("rogue", "broken"):
        workspace["load_from"].append(
            {
                "python_file": {
                    "relative_path": str(REPO / "tests" / "fixtures" / f"{name}_location.py"),
                    "location_name": name,
                }
            }
        )
    (tmp / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    return _tool(
        "check_graph",
        "--workspace",
        str(tmp / "workspace.yaml"),
        env={**platform.env, INGESTION_CATALOG: str(tmp / "catalog.yml")},
    )


def _lines(result: subprocess.CompletedProcess, prefix: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(prefix)]


def test_a_key_no_location_defines_fails_naming_key_and_every_location(broken_check):
    errors = _lines(broken_check, "error: ")
    assert broken_check.returncode == 1, broken_check.stdout + broken_check.stderr
    assert any(
        e.startswith("error: raw/payments: no location defines it, yet analytics_dbt depends on it")
        and "stg_app__payments" in e
        for e in errors
    ), errors
    assert any(
        e.startswith("error: raw/payments: no location defines it, yet ml_features depends on it") for e in errors
    ), errors
    assert any(
        e.startswith("error: raw/ordres: no location defines it, yet rogue depends on it (from rogue/typo)")
        for e in errors
    ), errors


def test_duplicate_keys_and_owners_fail_the_check(broken_check):
    errors = _lines(broken_check, "error: ")
    assert "error: raw/orders: defined by more than one location (ingestion, rogue)" in errors
    assert any(e.startswith("error: rogue/unowned (rogue): no team among its owners") for e in errors), errors
    assert any(e.startswith("error: rogue/typo (rogue): owner team:marketing is not a known team") for e in errors), (
        errors
    )
    assert broken_check.stdout.splitlines()[-1].startswith(f"FAILED: {len(errors)} errors, 1 warnings")


def test_a_location_that_fails_to_load_fails_the_check_naming_it(broken_check):
    errors = _lines(broken_check, "error: ")
    assert any(e.startswith("error: location broken failed to load:") and "a bad deploy" in e for e in errors), errors


def test_a_catalog_table_nobody_reads_is_a_warning_only(broken_check):
    assert _lines(broken_check, "warning: ") == [
        "warning: raw/audit_log: catalog table with no downstream consumer in any location"
    ]


def test_impact_of_raw_orders_across_locations(platform, webserver):
    result = _tool(
        "impact", "raw/orders", "--format", "json", env={**platform.env, DAGSTER_WEBSERVER_URL: webserver.url}
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["location"] == "ingestion"
    by_location = {loc: {a["key"]: a for a in assets} for loc, assets in report["downstream"].items()}
    assert set(by_location) == {"analytics_dbt", "ml_features"}
    assert {"stg_app__orders", "orders", "daily_revenue"} <= set(by_location["analytics_dbt"])
    assert {"features/customer_features", "ml/churn_model"} <= set(by_location["ml_features"])
    assert by_location["ml_features"]["ml/churn_model"]["role"] == "ML model"
    assert by_location["ml_features"]["ml/churn_model"]["owners"] == ["team:ml"]
    dashboards = [k for k, a in by_location["analytics_dbt"].items() if a["role"] == "dashboard"]
    assert dashboards and report["roles"]["dashboard"] == len(dashboards)
    # The session platform materialized everything: the state comes from its instance.
    assert by_location["analytics_dbt"]["orders"]["last_materialized"]
    assert report["teams"] == ["analytics", "ml"]
    assert report["count"] == sum(len(a) for a in by_location.values())
    assert report["summary"].startswith(f"raw/orders: {report['count']} assets downstream in 2 locations (")

    text = _tool("impact", "raw/orders", env={**platform.env, DAGSTER_WEBSERVER_URL: webserver.url})
    assert text.returncode == 0 and text.stdout.strip().splitlines()[-1] == report["summary"]
    assert "\nml_features\n" in text.stdout and "\nanalytics_dbt\n" in text.stdout


def test_impact_of_an_unknown_asset_names_it(platform, webserver):
    result = _tool("impact", "raw/ordres", env={**platform.env, DAGSTER_WEBSERVER_URL: webserver.url})
    assert result.returncode == 2
    assert "no code location defines the asset 'raw/ordres'" in result.stderr


def test_a_raw_column_the_catalog_stops_loading_fails_naming_its_readers(broken_check):
    catalog = next(line for line in broken_check.stdout.splitlines() if "catalog does not load" in line)
    path = catalog.split(" in ", 1)[1].rstrip(")")
    # Before any run too: the model's SQL and the feature query against the columns the
    # catalog will load (the features also read payments, which this catalog lost).
    assert {
        "error: stg_app__customers (analytics_dbt, models/staging/app/stg_app__customers.sql): "
        "Column 'country' could not be resolved. Line: 13, Col: 15",
        "error: features/customer_features (ml_features, the query of ml_features/platform_ml/features.py): "
        "reads raw.payments, which the warehouse does not have",
    } <= set(_lines(broken_check, "error: "))
    assert [e for e in _lines(broken_check, "error: ") if "reads raw/customers.country" in e] == [
        "error: features/customer_features (ml_features): column country reads raw/customers.country, which "
        f"the catalog does not load (columns.exclude of 'customers' in {path})",
        "error: stg_app__customers (analytics_dbt): column country_code reads raw/customers.country, which "
        f"the catalog does not load (columns.exclude of 'customers' in {path})",
    ]


def test_the_dbt_models_keep_the_column_contract_before_any_run(fresh_env, monkeypatch, tmp_path):
    """A platform that never ran: dbt compiles the models against the raw columns the
    catalog will load, and the ML feature query is read against them too. The real catalog
    passes; one that excludes customers.country fails, naming the model or the features,
    the file, the column and the line; what reads that model is not judged again."""
    for name, value in fresh_env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    tables = load_catalog(settings.catalog_path).tables
    manifest = column_contract.compiled_manifest(tmp_path)
    assert column_contract.problems(tables, settings.source_database_url, manifest) == []
    excluded = [
        dataclasses.replace(t, columns=dataclasses.replace(t.columns, exclude=("country",)))
        if t.source == "customers"
        else t
        for t in tables
    ]
    assert column_contract.problems(excluded, settings.source_database_url, manifest) == [
        "features/customer_features (ml_features, the query of ml_features/platform_ml/features.py): "
        "Column 'country' could not be resolved. Line: 10, Col: 44",
        "stg_app__customers (analytics_dbt, models/staging/app/stg_app__customers.sql): "
        "Column 'country' could not be resolved. Line: 13, Col: 15",
    ]
    # The same when the catalog selects the table's columns and leaves country out.
    customers = next(t for t in tables if t.source == "customers")
    engine = sa.create_engine(settings.source_database_url)
    names = [c["name"] for c in sa.inspect(engine).get_columns("customers")]
    engine.dispose()
    chosen = tuple(n for n in names if n != "country")
    selected = [
        dataclasses.replace(t, columns=dataclasses.replace(t.columns, select=chosen)) if t is customers else t
        for t in tables
    ]
    assert column_contract.problems(selected, settings.source_database_url, manifest) == column_contract.problems(
        excluded, settings.source_database_url, manifest
    )

    # A dashboard that declares a column its mart's yml declares too but its SQL does not
    # output (the raw name of customers.country_code): the location's load accepts it.
    broken = copy.deepcopy(manifest)
    exposure = broken["exposures"]["exposure.analytics.customer_value_dashboard"]
    exposure["config"]["meta"]["columns"]["customers"] += ["country"]
    broken["nodes"]["model.analytics.customers"]["columns"]["country"] = {"name": "country"}
    (problem,) = column_contract.problems(tables, settings.source_database_url, broken)
    assert problem.startswith(
        "dashboard customer_value_dashboard (analytics_dbt, models/marts/_marts__models.yml, config.meta.columns): "
        "customers.country is not a column the mart's SQL outputs (customer_id, "
    ), problem


_PARTITIONS_QUERY = """query ($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
    partitionKeys
    partitionDefinition { type name }
    assetPartitionStatuses {
        ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
        ... on TimePartitionStatuses { ranges { startKey endKey status } }
    }
} } }"""


def _partitions(url: str, *path: str) -> dict:
    return lineage.graphql(url, _PARTITIONS_QUERY, {"path": list(path)})["assetNodeOrError"]


def test_the_ui_shows_the_backtest_folds_as_partitions_of_the_evaluation(webserver):
    node = _partitions(webserver.url, "ml", "churn_model_evaluation")
    folds = ["2026-02-01", "2026-03-01", "2026-04-01", "2026-05-01"]  # the demo's history ends 2026-06-30
    assert node["partitionKeys"] == folds
    assert node["partitionDefinition"] == {"type": "DYNAMIC", "name": "churn_backtest_cutoffs"}
    assert sorted(node["assetPartitionStatuses"]["materializedPartitions"]) == folds
    assert node["assetPartitionStatuses"]["failedPartitions"] == []


def test_the_ui_shows_the_daily_partitions_of_sessions_and_today_built(webserver):
    today = datetime.now(UTC).date().isoformat()
    for mart in ("sessions", "session_funnel", "daily_revenue", "payment_health"):
        node = _partitions(webserver.url, mart)
        assert node["partitionDefinition"]["type"] == "TIME_WINDOW", mart
        assert node["partitionKeys"][0] == "2024-07-01" and node["partitionKeys"][-1] == today, mart
        # `make run` built today's partition (yesterday's if the suite crossed midnight UTC);
        # the history is one backfill away.
        [built] = node["assetPartitionStatuses"]["ranges"]
        assert built["status"] == "MATERIALIZED" and built["startKey"] == built["endKey"], mart
        assert built["startKey"] in node["partitionKeys"][-2:], mart
