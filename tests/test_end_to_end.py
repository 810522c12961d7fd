"""The three locations, materialized for real at a tiny scale in a temporary folder."""

import os

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from platform_ingestion.loading import pii_hasher
from platform_shared import load_catalog, load_settings
from platform_shared.settings import PII_HASH_KEY


def test_every_materializable_asset_of_every_location_materializes(platform):
    for location, result in platform.results.items():
        not_done = [r.asset for r in result.rows if r.status != "materialized"]
        assert result.success and not not_done, f"{location}: {not_done}"
    assert len(platform.results["ingestion"].rows) == len(load_catalog(load_settings().catalog_path).tables)


def _frame(df: pd.DataFrame, pk: tuple[str, ...]) -> pd.DataFrame:
    df = df[sorted(c for c in df.columns if not c.startswith("_dlt"))]
    for column in df.columns:
        if column.endswith("_at"):
            df[column] = pd.to_datetime(df[column])
    return df.sort_values(list(pk)).reset_index(drop=True)


def assert_raw_equals_source(source_url: str, warehouse, table: str, read=None, hash_key: str | None = None) -> None:
    """raw.<table> holds exactly the source's rows (personal-data columns compared hashed).

    Args:
        read: SQL -> DataFrame on the warehouse; by default the DuckDB file ``warehouse``.
        hash_key: the key the platform hashed personal data with; by default this process's.
    """
    entry = load_catalog(load_settings().catalog_path).table(table)
    engine = sa.create_engine(source_url)
    with engine.connect() as conn:
        source = pd.read_sql_table(entry.source, conn)
    engine.dispose()
    key = (
        hash_key or os.getenv(PII_HASH_KEY) or load_settings().pii_hash_key_file.read_text().strip()
        if entry.columns.hash
        else ""
    )
    hashing = pii_hasher(entry.columns.hash, key)
    source = hashing(pa.Table.from_pandas(source, preserve_index=False)).to_pandas()
    if read is None:
        with duckdb.connect(str(warehouse), read_only=True) as conn:
            raw = conn.execute(f'select * from raw."{table}"').df()
    else:
        raw = read(f'select * from raw."{table}"')
    assert len(raw) == len(source) > 0
    pd.testing.assert_frame_equal(_frame(raw, entry.primary_key), _frame(source, entry.primary_key), check_dtype=False)


@pytest.mark.parametrize("table", [t.warehouse_name for t in load_catalog(load_settings().catalog_path).tables])
def test_raw_table_equals_its_source_row_for_row(platform, table):
    assert_raw_equals_source(platform.source_url, platform.warehouse, table)


def test_dbt_tests_all_ran_as_asset_checks_and_passed(platform):
    result = platform.results["analytics_dbt"]
    assert result.failed_checks == []
    # Every check the location defines (one per dbt test) ran: none was skipped unseen.
    assert result.checks_run == result.checks_defined > 40
    with duckdb.connect(str(platform.warehouse), read_only=True) as conn:
        (orders,) = conn.execute("select count(*) from marts.orders").fetchall()[0]
        (raw_orders,) = conn.execute("select count(*) from raw.orders").fetchall()[0]
    assert orders == raw_orders


def test_the_churn_model_beats_chance_and_its_baseline_is_recorded(platform):
    evaluation = platform.instance.get_latest_materialization_event(
        __import__("dagster").AssetKey(["ml", "churn_model_evaluation"])
    ).asset_materialization
    auc = evaluation.metadata["roc_auc"].value
    baseline = evaluation.metadata["recency_roc_auc"].value
    assert 0.6 <= auc <= 1.0
    assert 0.0 <= baseline <= 1.0
