"""Reconciliation: every row compared with the source, what differs repaired."""

import duckdb
import pytest

from platform_ingestion import reconcile
from platform_ingestion.reconcile import NotReconcilable, reconcile_table
from platform_shared import RECONCILE_CHECK, Warehouse, load_catalog
from platform_shared import settings as s


def _reconcile(ingestion, table: str, *, raw: bool = False):
    found, metadata = reconcile_table(
        load_catalog(ingestion.catalog_path).table(table),
        warehouse=Warehouse(path=str(ingestion.warehouse)),
        source_url=ingestion.source_url,
        hash_key="test-only-key",
    )
    if raw:  # and the rows of raw unlike the source, counted and recorded
        assert metadata["raw_rows_unlike_source"] == found.raw_unlike_source
        return found.missing, found.extra, found.different, found.raw_unlike_source
    return found.missing, found.extra, found.different


@pytest.mark.parametrize(
    ("table", "key", "column", "value"),
    [("orders", "order_id", "status", "returned"), ("customers", "customer_id", "country", "XX")],
)
def test_an_update_the_cursor_missed_is_repaired(ingestion, monkeypatch, table, key, column, value):
    # Stamped with an old updated_at (a manual fix): no cursor ever reads it again. raw is
    # the stage as published, so it differs from the source at the same row (customers:
    # the stage holds every version, raw the current ones).
    monkeypatch.setenv(s.PII_HASH_KEY, "test-only-key")  # the key reconcile_table is given
    assert ingestion.run(table).success
    ingestion.sql(f"update {table} set {column} = '{value}', updated_at = '2024-01-01 00:00:00' where {key} = 3")
    assert ingestion.run(table).success
    assert ingestion.query(f"select {column} from raw.{table} where {key} = 3") != [(value,)]
    assert _reconcile(ingestion, table, raw=True) == (0, 0, 1, 1)
    ingestion.assert_raw_equals_source(table)
    assert _reconcile(ingestion, table, raw=True) == (0, 0, 0, 0)


def test_rows_changed_in_raw_itself_are_found_and_published_again(ingestion):
    """raw edited in the warehouse (by hand, or a bug): the stage and the source agree, so
    only comparing raw itself with the source finds it; raw is then published whole again
    from the stage."""
    assert ingestion.run("orders").success
    with duckdb.connect(str(ingestion.warehouse)) as conn:
        conn.execute("update raw.orders set status = 'tampered' where order_id = 3")
        conn.execute("delete from raw.orders where order_id = 4")
    found, metadata = reconcile_table(
        load_catalog(ingestion.catalog_path).table("orders"),
        warehouse=Warehouse(path=str(ingestion.warehouse)),
        source_url=ingestion.source_url,
        hash_key="test-only-key",
    )
    assert (found.missing, found.extra, found.different, found.raw_unlike_source) == (0, 0, 0, 2)
    assert not found.matched and metadata["raw_rows_unlike_source"] == 2
    ingestion.assert_raw_equals_source("orders")
    assert _reconcile(ingestion, "orders") == (0, 0, 0)


def test_raw_edited_at_one_key_and_the_stage_missing_another_are_both_repaired(ingestion):
    """As many rows of raw unlike the source as the stage has, at other keys: raw is
    published whole again, not only the stage's keys."""
    assert ingestion.run("orders").success
    with duckdb.connect(str(ingestion.warehouse)) as conn:
        conn.execute("delete from raw_stage.orders where order_id = 5")  # raw still has it, right
        conn.execute("update raw.orders set status = 'tampered' where order_id = 6")
    assert _reconcile(ingestion, "orders") == (1, 0, 0)
    ingestion.assert_raw_equals_source("orders")
    assert _reconcile(ingestion, "orders") == (0, 0, 0)


def test_missing_extra_and_different_rows_are_repaired_history_included(ingestion, monkeypatch):
    monkeypatch.setenv(s.PII_HASH_KEY, "test-only-key")  # the key reconcile_table is given below
    assert ingestion.run("customers", "products").success
    # A stage gone wrong (a bug, a restore, a hand edit): one row lost, one added, one changed.
    with duckdb.connect(str(ingestion.warehouse)) as conn:
        conn.execute("delete from raw_stage.customers where customer_id = 1")
        conn.execute(
            "insert into raw_stage.customers select * replace (customer_id + 100000 as customer_id, "
            "md5(customer_id::varchar) as _dlt_id) from raw_stage.customers where customer_id = 2"
        )
        conn.execute("update raw_stage.customers set country = 'XX' where customer_id = 3")
        conn.execute("update raw_stage.products set price_cents = -1 where product_id = 4")
    assert _reconcile(ingestion, "customers") == (1, 1, 1)
    assert _reconcile(ingestion, "products") == (0, 0, 1)
    ingestion.assert_raw_equals_source("customers")
    ingestion.assert_raw_equals_source("products")
    # History: the extra key retired, customer 3 has a version with the source's country again.
    assert ingestion.query(
        "select count(*) from raw.customers_history where customer_id = 100002 and valid_to is null"
    ) == [(0,)]
    assert ingestion.query(
        "select count(*) filter (valid_to is null), count(*) from raw.customers_history where customer_id = 1"
    ) == [(1, 1)]


def test_null_and_empty_text_differ_in_plain_and_hashed_columns(ingestion, monkeypatch):
    # Rows are compared by a hash of their values: a NULL must not hash as an empty text,
    # before or after personal data is hashed; a hashed column compares as it is staged.
    monkeypatch.setenv(s.PII_HASH_KEY, "test-only-key")
    ingestion.sql("update customers set first_name = null, last_name = null where customer_id in (5, 6)")
    assert ingestion.run("customers").success
    ingestion.sql(
        "update customers set first_name = '' where customer_id = 5;"
        "update customers set last_name = '' where customer_id = 6;"
        "update customers set last_name = 'Other' where customer_id = 7"
    )
    assert _reconcile(ingestion, "customers") == (0, 0, 3)
    ingestion.assert_raw_equals_source("customers")
    assert _reconcile(ingestion, "customers") == (0, 0, 0)


def test_datetime_text_hashes_as_the_load_stages_it(ingestion):
    # On SQLite into DuckDB, datetimes are read as text to be compared (connectorx parses
    # them slowly; reconcile._read_as_text): every text the load reads must hash as the
    # value it staged, a NULL included (the first row's, which types nothing).
    ingestion.sql(
        "alter table orders add column shipped_at DATETIME;"
        "update orders set shipped_at = '2024-01-01T10:00:00' where order_id = 2;"
        "update orders set shipped_at = '2024-01-01 10:00:00.123' where order_id = 3;"
        "update orders set shipped_at = '2024-01-01 10:00:00.123456789' where order_id = 4;"
        "update orders set shipped_at = '2024-1-1 10:00:00' where order_id = 5;"
        "update orders set shipped_at = ' 2024-01-01 10:00:00' where order_id = 6;"
        "update orders set shipped_at = '0001-01-01 00:00:00' where order_id = 7;"
        "update orders set shipped_at = '9999-12-31 23:59:59.999999' where order_id = 8"
    )
    assert ingestion.run("orders").success
    assert ingestion.query("select count(shipped_at) from raw.orders") == [(7,)]
    assert _reconcile(ingestion, "orders") == (0, 0, 0)
    # Changed under an old updated_at: a value, a NULL become a value, a value become NULL.
    ingestion.sql(
        "update orders set shipped_at = '2024-01-01 10:00:00.124' where order_id = 3;"
        "update orders set shipped_at = '2024-01-01 10:00:00' where order_id = 1;"
        "update orders set shipped_at = null where order_id = 8"
    )
    assert _reconcile(ingestion, "orders") == (0, 0, 3)
    # The same values written plainly (which the comparison below parses) are no change.
    ingestion.sql("update orders set shipped_at = '2024-01-01 10:00:00' where order_id in (5, 6)")
    assert _reconcile(ingestion, "orders") == (0, 0, 0)
    ingestion.assert_raw_equals_source("orders")


def test_a_missing_row_deleted_before_the_repair_reads_it_is_not_expected(ingestion, monkeypatch):
    # The repair reads the differing rows again after the comparison's snapshot: a key
    # deleted in between has no row to load, and the audit expects one row fewer.
    assert ingestion.run("orders").success
    with duckdb.connect(str(ingestion.warehouse)) as conn:
        conn.execute("delete from raw_stage.orders where order_id in (1, 2)")
    compare = reconcile._compare

    def compare_then_delete(*args, **kwargs):
        compared = compare(*args, **kwargs)
        ingestion.sql("delete from orders where order_id = 1")
        return compared

    monkeypatch.setattr(reconcile, "_compare", compare_then_delete)
    assert _reconcile(ingestion, "orders") == (2, 0, 0)
    ingestion.assert_raw_equals_source("orders")


def test_a_table_never_loaded_cannot_be_reconciled(ingestion):
    with pytest.raises(NotReconcilable, match=r"Table 'orders' is not loaded as its source stands.*make ingest"):
        _reconcile(ingestion, "orders")


def test_the_check_says_whether_the_table_matched_before_repairing_it(ingestion):
    import dagster as dg

    from platform_ingestion.definitions import defs

    assert ingestion.run("orders").success
    ingestion.sql("update orders set status = 'returned', updated_at = '2024-01-01 00:00:00' where order_id = 3")
    check = dg.AssetCheckKey(dg.AssetKey(["raw", "orders"]), RECONCILE_CHECK)
    job = dg.Definitions.merge(
        defs(), dg.Definitions(jobs=[dg.define_asset_job("reconcile", selection=dg.AssetSelection.checks(check))])
    ).resolve_job_def("reconcile")
    first = job.execute_in_process(raise_on_error=False)
    (evaluation,) = first.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["rows_different"].value == 1
    # The repair is a materialization of the table, for what reads it downstream.
    (repaired,) = first.get_asset_materialization_events()
    assert repaired.asset_key == check.asset_key
    ingestion.assert_raw_equals_source("orders")
    (again,) = job.execute_in_process(raise_on_error=False).get_asset_check_evaluations()
    assert (
        again.passed
        and again.metadata["rows_compared"].value == ingestion.query("select count(*) from raw.orders")[0][0]
    )


def test_plain_loads_leave_the_reconciliation_out(ingestion):
    result = ingestion.run()
    assert result.success and result.get_asset_check_evaluations() == []


def test_every_row_is_read_in_key_ranges_only_by_a_single_integer_key_never_null():
    """A range of an integer key misses the rows whose key is null, which the comparison
    counts: only a NOT NULL single integer key splits the read."""
    import sqlalchemy as sa

    from platform_shared.catalog import CatalogTable

    md = sa.MetaData()
    tables = {
        "by_id": sa.Table("by_id", md, sa.Column("id", sa.Integer, primary_key=True, nullable=False)),
        "nullable": sa.Table("nullable", md, sa.Column("id", sa.Integer, nullable=True)),
        "by_code": sa.Table("by_code", md, sa.Column("code", sa.Text, nullable=False)),
        "pair": sa.Table(
            "pair", md, sa.Column("a", sa.Integer, nullable=False), sa.Column("b", sa.Integer, nullable=False)
        ),
    }
    keys = {"by_id": ["id"], "nullable": ["id"], "by_code": ["code"], "pair": ["a", "b"]}
    chosen = {
        name: reconcile._partition_column(CatalogTable(source=name, warehouse_name=name, primary_key=keys[name]), t)
        for name, t in tables.items()
    }
    assert chosen == {"by_id": "id", "nullable": None, "by_code": None, "pair": None}


@pytest.mark.parametrize("cores", [2, 3])
def test_key_ranges_hold_as_many_rows_each_and_every_row_once(tmp_path, monkeypatch, cores):
    """Keys with a gap (1 to 1,000, then 10 keys near a million): splitting the span of
    the keys evenly would put every row in one range."""
    import sqlalchemy as sa

    from platform_shared.catalog import CatalogTable

    monkeypatch.setattr(reconcile, "_CORES", cores)
    url = f"sqlite:///{tmp_path / 'gaps.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table events (id integer not null primary key, kind text)")
        keys = [*range(1, 1001), *range(1_000_000, 1_000_010)]
        conn.exec_driver_sql("insert into events values " + ", ".join(f"({k}, 'k{k}')" for k in keys))
    reflected = sa.Table("events", sa.MetaData(), autoload_with=engine)
    table = CatalogTable(source="events", warehouse_name="events", primary_key=("id",))
    ranges = reconcile._key_ranges(sa.select(reflected), table, reflected, url)
    with engine.connect() as conn:
        read = [[row.id for row in conn.execute(query)] for query in ranges]
    engine.dispose()
    assert sorted(k for part in read for k in part) == keys
    assert len(read) == cores and all(abs(len(part) - len(keys) / cores) <= 1 for part in read)
