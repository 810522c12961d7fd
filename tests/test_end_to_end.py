"""The three locations, materialized for real at a tiny scale in a temporary folder."""

import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from platform_ingestion.loading import pii_hasher
from platform_shared import load_catalog, load_settings
from platform_shared import settings as s
from platform_shared.settings import PII_HASH_KEY

REPO = Path(__file__).resolve().parents[1]


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
    declared = {c.name: c.type for c in sa.Table(entry.source, sa.MetaData(), autoload_with=engine).columns}
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
    # The declared types too: frames compared with check_dtype=False would take an integer
    # loaded as text, or a timestamp as a string, for the source's.
    types = (
        "select column_name, data_type from information_schema.columns "
        f"where table_schema = 'raw' and table_name = '{table}'"
    )
    if read is None:
        with duckdb.connect(str(warehouse), read_only=True) as conn:
            loaded = dict(conn.execute(types).fetchall())
    else:
        loaded = dict(read(types).itertuples(index=False, name=None))
    assert sorted(loaded) == sorted(declared), table
    for column, warehouse_type in loaded.items():
        kind = sa.String() if column in entry.columns.hash else declared[column]
        assert warehouse_type.lower().startswith(_warehouse_types(kind)), (table, column, warehouse_type)
    pd.testing.assert_frame_equal(_frame(raw, entry.primary_key), _frame(source, entry.primary_key), check_dtype=False)


def _warehouse_types(declared: sa.types.TypeEngine) -> tuple[str, ...]:
    """How a declared source type is named in the warehouse (the start of the name, DuckDB's
    or PostgreSQL's)."""
    for kind, names in [
        (sa.Boolean, ("boolean",)),
        (sa.Integer, ("bigint", "integer")),
        (sa.DateTime, ("timestamp",)),
        (sa.Date, ("date",)),
        (sa.Float, ("double",)),
        (sa.Numeric, ("decimal", "numeric")),
        (sa.String, ("varchar", "character varying", "text")),
    ]:
        if isinstance(declared, kind):
            return names
    raise AssertionError(f"no warehouse type known for {declared!r}")


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


def test_make_reconcile_repairs_what_the_cursor_missed_and_an_edit_of_raw(platform, tmp_path):
    """`make reconcile TABLES=orders,payments` on a copy of the platform: an order updated
    with an old updated_at (no cursor reads it again) and a payment edited in raw itself."""
    for name in ("app.db", "warehouse.duckdb"):
        shutil.copy(platform.root / name, tmp_path / name)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    source = f"sqlite:///{tmp_path}/app.db"
    env = {
        **os.environ,
        **platform.env,
        s.SOURCE_DATABASE_URL: source,
        s.WAREHOUSE_PATH: str(tmp_path / "warehouse.duckdb"),
        s.DAGSTER_HOME: str(home),
    }
    with sa.create_engine(source).begin() as conn:
        conn.execute(
            sa.text("update orders set status = 'returned', updated_at = '2020-01-01 00:00:00' where order_id = 3")
        )
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        conn.execute("update raw.payments set amount_cents = amount_cents + 1 where payment_id = 5")

    def reconcile(tables: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", "--no-print-directory", "reconcile", f"TABLES={tables}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    first = reconcile("orders,payments")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    rows = {
        line.split()[0]: line.split()[1:]
        for line in first.stdout.splitlines()
        if line.startswith(("orders", "payments"))
    }
    orders, payments = (platform_rows(platform, t) for t in ("orders", "payments"))
    assert rows == {
        "orders": [f"{orders:,}", "0", "0", "1", "1", "repaired"],
        "payments": [f"{payments:,}", "0", "0", "0", "1", "repaired"],
    }
    assert "OK: 2 table(s)" in first.stdout
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        assert conn.execute("select status from raw.orders where order_id = 3").fetchall() == [("returned",)]
    again = reconcile("orders,payments")
    assert [line.split()[-1] for line in again.stdout.splitlines() if line.startswith(("orders", "payments"))] == [
        "matched",
        "matched",
    ]
    unknown = reconcile("nope")
    assert unknown.returncode != 0 and "no reconcilable raw table ['nope']" in unknown.stderr


def platform_rows(platform, table: str) -> int:
    with sa.create_engine(platform.env["SOURCE_DATABASE_URL"]).connect() as conn:
        return conn.execute(sa.text(f"select count(*) from {table}")).scalar_one()
