"""Loads while the application writes: a real writer process commits small transactions
to every table during the runs (SQLite in WAL mode)."""

from platform_shared import settings as s

from .conftest import committed_catalog

TABLES = ["customers", "products", "orders", "order_items", "payments", "web_sessions"]


def test_runs_while_the_application_writes_succeed_and_converge(ingestion, writer):
    # The first load, then hourly runs, all during commits; then a quiet run. The full
    # table (products) with history here; without it into PostgreSQL (below).
    catalog = committed_catalog().replace(
        "  - source: products\n    primary_key: product_id\n",
        "  - source: products\n    primary_key: product_id\n    history: scd2\n",
    )
    assert "history: scd2\n    description: The product catalog." in catalog
    ingestion.catalog_path.write_text(catalog)
    compared = ingestion.runs_during_writes(writer(), runs=3)
    # The writer's commits reached the comparison with the source (deletes at least).
    assert any(compared)
    for table in TABLES:
        ingestion.assert_raw_equals_source(table)
    # The full table's history: one current version of each product.
    assert ingestion.query("select count(*) from raw.products_history where valid_to is null") == ingestion.query(
        "select count(*) from raw.products"
    )


def _metadata(result, table: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == table]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_row_written_with_an_old_cursor_is_loaded_by_its_key(ingestion):
    # A long transaction, a clock behind, a manual fix: a row inserted with an updated_at
    # below the overlap window. It failed the table's audit on every run until a full refresh.
    assert ingestion.run("orders", "customers").success
    ingestion.sql(
        "insert into orders select order_id + 1000000, customer_id, status, total_cents, created_at, "
        "'2024-01-01 00:00:00' from orders where order_id = 1;"
        "insert into customers select customer_id + 1000000, email, first_name, last_name, country, "
        "signup_channel, created_at, '2024-01-01 00:00:00' from customers where customer_id = 1"
    )
    result = ingestion.run("orders", "customers")
    assert result.success, ingestion.failure_message(result)
    for table in ("orders", "customers"):
        metadata = _metadata(result, table)
        assert (metadata["rows_loaded_by_key"], metadata["keys_compared"]) == (1, True)
        ingestion.assert_raw_equals_source(table)
    assert ingestion.query("select count(*) from raw.customers_history where customer_id = 1000001") == [(1,)]


def test_a_cursor_in_the_future_never_stalls_the_table(ingestion):
    assert ingestion.run("orders").success
    ingestion.sql("update orders set status = 'returned', updated_at = '2099-01-01 00:00:00' where order_id = 1")
    assert ingestion.run("orders").success  # reads the future row; its mark stops at this run's start
    ingestion.sql("update orders set status = 'returned', updated_at = datetime('now') where order_id = 2")
    result = ingestion.run("orders")
    metadata = _metadata(result, "orders")
    assert "2099-01-01" in metadata["cursor_ahead_of_clock"]
    # Both rows changed at or after the last run's start (minus the overlap) are read.
    assert metadata["rows_loaded"] == 2
    ingestion.assert_raw_equals_source("orders")


def test_runs_into_a_postgres_warehouse_while_the_application_writes(ingestion, writer, postgres_database, monkeypatch):
    monkeypatch.setenv(s.WAREHOUSE, "postgres")
    monkeypatch.setenv(s.WAREHOUSE_URL, postgres_database)
    ingestion.warehouse_url = postgres_database
    ingestion.runs_during_writes(writer(), runs=2)
    for table in TABLES:
        ingestion.assert_raw_equals_source(table)


def test_a_missed_key_and_a_delete_that_offset_each_other_are_both_seen(ingestion):
    """A row inserted with an old cursor value (no cursor reads it) and a hard delete in the
    same hour: same count, same smallest and largest key. The sum of the keys differs."""
    ingestion.sql("delete from order_items where order_id = 7; delete from payments where order_id = 7")
    ingestion.sql("create table gone as select * from orders where order_id = 7; delete from orders where order_id = 7")
    assert ingestion.run("orders").success
    ingestion.sql(
        "insert into orders select order_id, customer_id, status, total_cents, created_at, '2024-01-01 00:00:00' "
        "from gone; delete from order_items where order_id = 9; delete from payments where order_id = 9;"
        "delete from orders where order_id = 9"
    )
    result = ingestion.run("orders")
    assert result.success, ingestion.failure_message(result)
    metadata = _metadata(result, "orders")
    assert (metadata["keys_compared"], metadata["rows_loaded_by_key"], metadata["rows_deleted"]) == (True, 1, 1)
    ingestion.assert_raw_equals_source("orders")


def test_reconciling_while_the_application_writes_succeeds_and_converges(ingestion, writer, monkeypatch):
    """Every table reconciled while the writer commits, each read in ranges of keys read
    at once (each range its own snapshot): see ``Ingestion.reconciles_during_writes``."""
    monkeypatch.setenv(s.PII_HASH_KEY, "test-only-key")
    assert ingestion.run().success
    ingestion.reconciles_during_writes(writer(), TABLES)
