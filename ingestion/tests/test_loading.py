"""Per-table loads: incremental, deletes, idempotence, history, backfill, PII."""

import dataclasses
import sqlite3
from datetime import datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from platform_ingestion import audit
from platform_ingestion.loading import LoadRequest, build_resource, pii_hasher
from platform_shared import load_catalog
from platform_shared import settings as s
from platform_shared.demo_data import simulate_day

TABLES = ["customers", "products", "orders", "order_items", "payments", "web_sessions"]


def test_after_inserts_updates_and_deletes_every_raw_table_equals_its_source(ingestion):
    assert ingestion.run().success
    for seed in (1, 2):
        counts = simulate_day(ingestion.source_url, seed=seed)
        assert counts["deleted"] > 0 and counts["updated"] > 0
        assert ingestion.run().success
    for table in TABLES:
        ingestion.assert_raw_equals_source(table)


def test_a_hard_delete_in_the_source_is_applied_to_an_incremental_table(ingestion):
    assert ingestion.run("orders", "order_items").success
    (oid,) = ingestion.query("select min(order_id) from raw.order_items")[0]
    ingestion.sql(f"delete from order_items where order_id = {oid}")
    result = ingestion.run("order_items")
    assert result.success
    assert ingestion.query(f"select count(*) from raw.order_items where order_id = {oid}") == [(0,)]
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rows_deleted"].value >= 1


def test_ingesting_twice_changes_nothing(ingestion):
    assert ingestion.run().success
    before = {t: ingestion.query(f"select * from raw.{t} order by all") for t in TABLES}
    history = ingestion.query("select count(*) from raw.customers_history")
    assert ingestion.run().success
    assert {t: ingestion.query(f"select * from raw.{t} order by all") for t in TABLES} == before
    assert ingestion.query("select count(*) from raw.customers_history") == history


def test_scd2_history_keeps_every_past_state_with_validity(ingestion):
    assert ingestion.run("customers").success
    ingestion.sql("update customers set country = 'ZZ', updated_at = '2026-07-02 00:00:00' where customer_id = 3")
    assert ingestion.run("customers").success
    versions = ingestion.query(
        "select country, valid_to is null from raw.customers_history where customer_id = 3 order by valid_from"
    )
    assert len(versions) == 2 and versions[0][1] is False and versions[1] == ("ZZ", True)
    assert ingestion.query("select country from raw.customers where customer_id = 3") == [("ZZ",)]


def _history_matches_stage(ingestion, table: str) -> None:
    """raw.<table>_history holds exactly the staged versions (so publishing only the
    changed keys' versions missed nothing)."""
    columns = [
        c
        for (c,) in ingestion.query(
            f"select column_name from information_schema.columns where table_schema = 'raw' "
            f"and table_name = '{table}' order by ordinal_position"
        )
    ]
    select = ", ".join(columns)
    assert ingestion.query(
        f"select {select}, valid_from, valid_to from raw.{table}_history order by all"
    ) == ingestion.query(f"select {select}, _dlt_valid_from, _dlt_valid_to from raw_stage.{table} order by all")


def test_an_incremental_table_with_history_reads_only_changes_and_retires_deleted_rows(ingestion, monkeypatch):
    assert ingestion.run("customers").success
    (total,) = ingestion.query("select count(*) from raw.customers")[0]
    # From now on publishing copies only the changed keys, never the whole table again.
    copies = []
    monkeypatch.setattr(audit, "replace_table", lambda conn, schema, name, select: copies.append(name))
    ingestion.sql(
        "update customers set country = 'ZZ', updated_at = '2026-07-02 00:00:00' where customer_id = 3;"
        "delete from customers where customer_id = 5;"
    )
    result = ingestion.run("customers")
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    # The cursor read the changed row (and the overlap window), not the table.
    assert 1 <= meta["rows_loaded"].value < total / 10
    assert meta["rows_deleted"].value == 1 and meta["keys_compared"].value is True
    history = lambda cid: ingestion.query(  # noqa: E731
        f"select country, valid_to is null from raw.customers_history where customer_id = {cid} order by valid_from"
    )
    assert [current for _, current in history(3)] == [False, True] and history(3)[1][0] == "ZZ"
    # A deleted row stays in the history, retired; it leaves the current table.
    assert [current for _, current in history(5)] == [False]
    ingestion.assert_raw_equals_source("customers")
    _history_matches_stage(ingestion, "customers")

    # The deleted customer comes back (same key): a new current version.
    ingestion.sql(
        "insert into customers select 5, email, first_name, last_name, 'NL', signup_channel, created_at, "
        "'2026-07-03 00:00:00' from customers where customer_id = 4"
    )
    again = ingestion.run("customers")
    assert again.success
    assert again.get_asset_materialization_events()[0].materialization.metadata["keys_compared"].value is False
    assert [current for _, current in history(5)] == [False, True] and history(5)[1][0] == "NL"
    ingestion.assert_raw_equals_source("customers")
    _history_matches_stage(ingestion, "customers")
    # Idempotent: a rerun over the same source adds no version.
    versions = ingestion.query("select count(*) from raw.customers_history")
    assert ingestion.run("customers").success
    assert ingestion.query("select count(*) from raw.customers_history") == versions
    assert copies == []


def test_an_unchanged_row_keeps_its_one_version_whatever_batch_it_is_read_in(ingestion):
    # Regression: the row hash that scd2 compares came from pandas, where an integer
    # column turns float in a batch that holds a null: a row read beside a null one
    # hashed differently, and got a new version though nothing changed.
    ingestion.sql(
        "create table devices (device_id integer primary key, owner_id integer, name text);"
        "insert into devices values (1, 10, 'phone'), (2, null, 'tablet'), (3, 30, 'laptop');"
    )
    ingestion.catalog_path.write_text(
        "tables:\n  - source: devices\n    primary_key: device_id\n    history: scd2\n    chunk_rows: 2\n"
    )
    assert ingestion.run("devices").success
    ingestion.sql("delete from devices where device_id = 2")  # device 1 is now read in a batch without nulls
    assert ingestion.run("devices").success
    assert ingestion.query("select device_id, count(*) from raw.devices_history group by 1 order by 1") == [
        (1, 1),
        (2, 1),
        (3, 1),
    ]
    assert ingestion.query("select device_id from raw.devices order by 1") == [(1,), (3,)]


def test_a_row_the_cursor_missed_is_not_hidden_by_a_delete(ingestion):
    # A new order written with an old cursor value (the cursor never reads it) and a hard
    # delete in one hour: the row counts match, the largest key does not. The keys are
    # compared: the delete is applied and the missed row loaded by its key (it used to
    # fail the audit on every run until a full refresh).
    assert ingestion.run("orders").success
    ingestion.sql(
        "insert into orders select max(order_id) + 1, customer_id, status, total_cents, created_at, "
        "'2020-01-01 00:00:00' from orders; delete from orders where order_id = 8;"
    )
    caught = ingestion.run("orders").get_asset_materialization_events()[0].materialization.metadata
    assert (caught["keys_compared"].value, caught["rows_deleted"].value, caught["rows_loaded_by_key"].value) == (
        True,
        1,
        1,
    )
    ingestion.assert_raw_equals_source("orders")


def test_the_key_comparison_runs_only_when_the_row_counts_show_a_delete(ingestion):
    assert ingestion.run("orders").success
    ingestion.sql("update orders set status = 'returned', updated_at = '2026-07-02 00:00:00' where order_id = 7")
    unchanged = ingestion.run("orders").get_asset_materialization_events()[0].materialization.metadata
    assert unchanged["keys_compared"].value is False and unchanged["rows_deleted"].value == 0
    ingestion.sql("delete from orders where order_id = 8")
    deleted = ingestion.run("orders").get_asset_materialization_events()[0].materialization.metadata
    assert deleted["keys_compared"].value is True and deleted["rows_deleted"].value == 1
    ingestion.assert_raw_equals_source("orders")


@pytest.mark.parametrize("without_rowid", [False, True], ids=["rowid table", "without rowid"])
def test_deletes_are_found_among_composite_text_keys(ingestion, without_rowid):
    # The key comparison reads a SQLite table's keys as text in JSON lines
    # (snapshot._sqlite_keys), in batches of rowids; a WITHOUT ROWID table's through the
    # driver's rows. Either must find exactly the deleted keys, whatever their text holds.
    ingestion.sql(
        "create table tags (owner text, n integer, label text, updated_at timestamp, primary key (owner, n))"
        + (" without rowid;" if without_rowid else ";")
        + "insert into tags values ('a''b', 1, 'x', '2026-01-01 10:00:00'), ('c,d', 1, 'x', '2026-01-01 10:00:00'),"
        "('e\nf', 1, 'x', '2026-01-01 10:00:00'), ('\u00fc\"', 2, 'x', '2026-01-01 10:00:00'),"
        "('{\"n\": 1}', 3, 'x', '2026-01-01 10:00:00'), ('c,d', 2, 'x', '2026-01-01 10:00:00');"
    )
    ingestion.catalog_path.write_text(
        "tables:\n  - source: tags\n    primary_key: [owner, n]\n    load: incremental\n    cursor: updated_at\n"
        "    chunk_rows: 2\n"
    )
    assert ingestion.run("tags").success
    ingestion.sql("delete from tags where (owner, n) in (values ('a''b', 1), ('\u00fc\"', 2), ('c,d', 2))")
    deleted = ingestion.run("tags").get_asset_materialization_events()[0].materialization.metadata
    assert (deleted["keys_compared"].value, deleted["rows_deleted"].value) == (True, 3)
    assert ingestion.query("select owner, n from raw.tags order by owner, n") == [
        ("c,d", 1),
        ("e\nf", 1),
        ('{"n": 1}', 3),
    ]
    ingestion.assert_raw_equals_source("tags")


def test_the_pipeline_folder_keeps_no_copy_of_the_loaded_rows(ingestion):
    # Regression: dlt kept the extracted files of every completed load; the folder of a
    # table grew by a copy of each load (the size of the table, for a full one).
    assert ingestion.run("orders", "products").success
    assert ingestion.run("orders", "products").success
    folder = ingestion.warehouse.parent / "dlt_pipelines"
    assert folder.is_dir()
    data_files = [p for p in folder.rglob("*") if p.suffix in (".parquet", ".jsonl", ".csv", ".gz")]
    assert data_files == []
    # Of the completed loads, dlt's summary of the newest one stays.
    assert sorted(len(list(p.iterdir())) for p in folder.rglob("load/loaded")) == [1, 1]


def test_a_date_cursor_overlaps_by_a_day(ingestion):
    # Regression: dlt reads the lag of a date cursor in days: the 15 minutes of overlap
    # (900 seconds) re-read 900 days of rows on every run.
    ingestion.sql(
        "create table visits (visit_id integer primary key, day date);"
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < 1000) "
        "insert into visits select i, date('2023-01-01', '+' || i || ' days') from n;"
    )
    ingestion.catalog_path.write_text(
        "tables:\n  - source: visits\n    primary_key: visit_id\n    load: incremental\n    cursor: day\n"
    )
    assert ingestion.run("visits").success
    again = ingestion.run("visits").get_asset_materialization_events()[0].materialization.metadata
    assert again["rows_loaded"].value == 2  # the last day and the one before
    ingestion.assert_raw_equals_source("visits")


def test_a_date_cursor_in_the_future_never_stalls_the_table(ingestion):
    """A date cursor keeps dlt's own state, which a row dated ahead of the clock would move
    to that day: later rows, dated today, were never read again."""
    ingestion.sql(
        "create table visits (visit_id integer primary key, day date, n integer);"
        "insert into visits values (1, date('now', '-10 days'), 1), (2, date('now', '-9 days'), 1);"
    )
    ingestion.catalog_path.write_text(
        "tables:\n  - source: visits\n    primary_key: visit_id\n    load: incremental\n    cursor: day\n"
    )
    assert ingestion.run("visits").success
    ingestion.sql("insert into visits values (3, '2099-01-01', 1)")  # a clock ahead
    assert ingestion.run("visits").success
    ingestion.sql(
        "insert into visits values (4, date('now'), 1); update visits set n = 2, day = date('now') where visit_id = 1"
    )
    result = ingestion.run("visits")
    assert result.success, ingestion.failure_message(result)
    ingestion.assert_raw_equals_source("visits")
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert "2099-01-01" in metadata["cursor_ahead_of_clock"].value
    # The row dated ahead is corrected: later updates still arrive (dlt's own state, which
    # that row moved to 2099, is never read again).
    ingestion.sql("update visits set day = date('now') where visit_id = 3")
    assert ingestion.run("visits").success
    ingestion.sql("update visits set n = 3, day = date('now') where visit_id = 2")
    assert ingestion.run("visits").success
    ingestion.assert_raw_equals_source("visits")


def test_a_date_range_backfill_reloads_only_that_window(ingestion):
    assert ingestion.run("orders").success
    old, new = ingestion.query(
        "select order_id from raw.orders where order_id in (select min(order_id) from raw.orders "
        "union all select max(order_id) from raw.orders) order by order_id"
    )
    # An update the cursor missed (updated_at untouched), on an old and a new order.
    ingestion.sql(f"update orders set status = 'returned' where order_id in ({old[0]}, {new[0]})")
    (old_at,) = ingestion.query(f"select updated_at from raw.orders where order_id = {old[0]}")[0]
    window = {
        "backfill_from": str(old_at.replace(hour=0, minute=0, second=0, microsecond=0)),
        "backfill_to": str(old_at.replace(hour=23, minute=59, second=59)),
    }
    assert ingestion.run("orders", config=window).success
    statuses = dict(ingestion.query(f"select order_id, status from raw.orders where order_id in ({old[0]}, {new[0]})"))
    assert statuses[old[0]] == "returned" and statuses[new[0]] != "returned"


def test_a_full_refresh_reloads_the_whole_table(ingestion):
    assert ingestion.run("payments").success
    ingestion.sql("update payments set method = 'voucher'")  # cursor column untouched
    assert ingestion.run("payments", config={"full_refresh": True}).success
    assert ingestion.query("select distinct method from raw.payments") == [("voucher",)]


def test_personal_data_is_hashed_and_tagged(ingestion):
    result = ingestion.run("customers")
    emails = ingestion.query("select email from raw.customers")
    assert all(len(e) == 64 and "@" not in e for (e,) in emails)
    schema = result.get_asset_materialization_events()[0].materialization.metadata["dagster/column_schema"].value
    tags = {c.name: c.tags for c in schema.columns}
    assert tags["email"] == {"pii": "hashed"} and tags["last_name"] == {"pii": "hashed"}
    assert not tags["country"]


def test_without_pii_hash_key_a_local_key_is_made_once_and_kept_private(ingestion, monkeypatch):
    # An unkeyed SHA-256 of an email is reversed with a dictionary of emails: `make run`
    # hashes with a random key of its own instead, kept beside the warehouse.
    monkeypatch.delenv(s.PII_HASH_KEY, raising=False)
    assert ingestion.run("customers").success
    key_file = ingestion.warehouse.parent / "pii_hash.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_text()) == 64
    first = ingestion.query("select email from raw.customers where customer_id = 1")
    assert first == [
        (
            pii_hasher(("email",), key_file.read_text())(pa.table({"email": [ingestion.source_email(1)]}))
            .column("email")[0]
            .as_py(),
        )
    ]
    assert ingestion.run("customers", config={"full_refresh": True}).success
    assert ingestion.query("select email from raw.customers where customer_id = 1") == first


def test_hashed_columns_with_an_empty_key_load_nothing(ingestion):
    from platform_ingestion.engine import ingest_table
    from platform_shared import CatalogError, Warehouse

    customers = load_catalog(ingestion.catalog_path).table("customers")
    with pytest.raises(
        CatalogError,
        match=r"Table 'customers' hashes \['email', 'last_name'\] but the hash key "
        r"is empty.*Set PII_HASH_KEY",
    ):
        ingest_table(
            customers,
            request=LoadRequest(),
            warehouse=Warehouse(path=str(ingestion.warehouse)),
            source_url=ingestion.source_url,
            pipelines_dir=ingestion.root / "dlt",
            hash_key="",
        )
    assert not ingestion.warehouse.exists()


def test_metadata_records_rows_cursor_schema_and_table_name(ingestion):
    result = ingestion.run("orders")
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["dagster/table_name"].value == "raw.orders"
    assert meta["dagster/row_count"].value == meta["rows_loaded"].value > 0
    assert datetime.fromisoformat(meta["cursor_value"].value).year == 2026
    assert {c.name for c in meta["dagster/column_schema"].value.columns} >= {"order_id", "updated_at"}


def test_a_table_is_extracted_in_batches_of_chunk_rows(ingestion):
    orders = load_catalog(ingestion.catalog_path).table("orders")
    # A full load: iterating the resource needs no pipeline state for a cursor.
    table = dataclasses.replace(orders, load="full", cursor=None, chunk_rows=7)
    resource, _ = build_resource(table, source_url=ingestion.source_url, request=LoadRequest(), hash_key="")
    batches = list(resource)
    assert len(batches) > 1 and all(b.num_rows <= 7 for b in batches)
    ids = pa.concat_tables(batches).column("order_id").to_pylist()
    with sqlite3.connect(ingestion.root / "app.db") as conn:
        source_ids = [i for (i,) in conn.execute("select order_id from orders")]
    assert sorted(ids) == sorted(source_ids)


def test_tiny_chunks_load_exactly_the_source_rows_through_updates_and_deletes(ingestion):
    catalog = ingestion.catalog_path.read_text()
    ingestion.catalog_path.write_text(catalog.replace("defaults:\n", "defaults:\n  chunk_rows: 7\n", 1))
    assert ingestion.run().success
    simulate_day(ingestion.source_url, seed=1)
    assert ingestion.run().success
    for table in TABLES:
        ingestion.assert_raw_equals_source(table)


INCREMENTAL_EVENTS = """
tables:
  - source: events
    primary_key: event_id
    load: incremental
    cursor: updated_at
"""


def test_changes_kept_back_by_a_failed_audit_are_published_by_the_next_good_run(ingestion):
    ingestion.sql(
        "create table events (event_id integer, kind text, updated_at timestamp);"
        "insert into events values (1, 'click', '2026-01-01 10:00:00'), (2, 'view', '2026-01-01 11:00:00'),"
        " (3, 'view', '2026-01-01 12:00:00');"
    )
    ingestion.catalog_path.write_text(INCREMENTAL_EVENTS)
    assert ingestion.run("events").success
    # An update, a hard delete and a bad row (null key) in one run: the audit fails.
    ingestion.sql(
        "update events set kind = 'buy', updated_at = '2026-02-01 00:00:00' where event_id = 1;"
        "delete from events where event_id = 3;"
        "insert into events values (null, 'orphan', '2026-03-01 00:00:00');"
    )
    failed = ingestion.run("events")
    assert "1 row(s) with a null primary key" in ingestion.failure_message(failed)
    assert ingestion.query("select event_id, kind from raw.events order by 1") == [
        (1, "click"),
        (2, "view"),
        (3, "view"),
    ]
    # The bad row goes; the next run's cursor window no longer reaches the update.
    ingestion.sql(
        "delete from events where event_id is null; insert into events values (4, 'view', '2026-03-02 00:00:00')"
    )
    assert ingestion.run("events").success
    ingestion.assert_raw_equals_source("events")
    # A new column is published too, and an emptied source table empties raw.
    ingestion.sql(
        "alter table events add column channel text; "
        "update events set channel = 'web', updated_at = '2026-03-03 00:00:00'"
    )
    assert ingestion.run("events").success
    ingestion.assert_raw_equals_source("events")
    ingestion.sql("delete from events")
    assert ingestion.run("events").success
    assert ingestion.query("select count(*) from raw.events") == [(0,)]


def test_rows_left_in_stage_by_a_failed_first_load_are_reconciled_on_the_next(ingestion):
    # A first load skips the key comparison (every staged row came from its extract); a
    # stage that still holds an earlier load's rows must not: here the rows of a first
    # load that failed its audit, two of them deleted from the source before the retry.
    with sqlite3.connect(ingestion.root / "app.db") as conn:  # the same table without its key constraint
        (ddl,) = conn.execute("select sql from sqlite_master where name = 'payments'").fetchone()
        conn.executescript(
            "alter table payments rename to old_payments;" + ddl.replace("PRIMARY KEY (payment_id),", "") + ";"
            "insert into payments select * from old_payments; drop table old_payments;"
            "insert into payments select * from payments where payment_id = (select min(payment_id) from payments)"
        )
    first = ingestion.run("payments")
    assert not first.success and "more than one row" in ingestion.failure_message(first)
    ingestion.sql(
        "delete from payments where payment_id in (select payment_id from payments order by payment_id limit 2)"
    )
    retry = ingestion.run("payments")
    assert retry.success
    assert retry.get_asset_materialization_events()[0].materialization.metadata["rows_deleted"].value >= 2
    ingestion.assert_raw_equals_source("payments")


def test_a_second_warehouse_in_the_same_folder_gets_every_row(ingestion, monkeypatch):
    # Regression: the dlt state (cursors) lived in one folder beside the warehouse file,
    # shared by every warehouse there; a second warehouse (a PostgreSQL one, or another
    # DuckDB file) extracted only the rows above the first one's cursor and failed its audit.
    assert ingestion.run("orders").success
    other = ingestion.root / "other.duckdb"
    monkeypatch.setenv(s.WAREHOUSE_PATH, str(other))
    assert ingestion.run("orders").success
    ingestion.warehouse = other
    ingestion.assert_raw_equals_source("orders")


PART = """
tables:
  - source: part
    primary_key: p_partkey
    load: incremental
    cursor: updated_at
"""


def test_a_sqlite_decimal_column_with_integers_and_reals_loads_exactly(ingestion):
    # SQLite stores 901.00 as the integer 901: connectorx typed the column by whichever
    # storage class came first and panicked on the other (a TPC-H part table, p_retailprice).
    ingestion.sql(
        "create table part (p_partkey integer primary key, p_name varchar(55), "
        "p_retailprice decimal(15,2), p_size numeric, updated_at timestamp);"
        "insert into part values (1, 'a', 901.00, 7, '2026-01-01 00:00:00'), "
        "(2, 'b', 901.5, 7.25, '2026-01-01 00:00:00'), (3, 'c', null, null, '2026-01-01 00:00:00')"
    )
    ingestion.catalog_path.write_text(PART)
    assert ingestion.run("part").success
    ingestion.sql("insert into part values (4, 'd', 1234567890123.45, 3, '2026-07-01 00:00:00')")
    hourly = ingestion.run("part")
    assert hourly.success
    assert ingestion.query("select p_partkey, p_retailprice::varchar, p_size from raw.part order by 1") == [
        (1, "901.00", Decimal("7")),
        (2, "901.50", Decimal("7.25")),
        (3, None, None),
        (4, "1234567890123.45", Decimal("3")),
    ]
    assert (
        dict(
            ingestion.query(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'raw' and table_name = 'part'"
            )
        )["p_retailprice"]
        == "DECIMAL(15,2)"
    )


@pytest.mark.parametrize(
    ("declared", "values", "message"),
    [
        # SQLite keeps each value's own storage class; connectorx typed the column by the
        # first one and failed on the next with its own error, naming no table.
        ("integer", "5, 1.5", "(declared INTEGER, read as integer) holds values of another storage class, "
         "which would not load exactly, for example in the rows [(2, '1.5', 'real')]"),
        ("integer", "5, 'abc'", "(declared INTEGER, read as integer) holds values of another storage class, "
         "which would not load exactly, for example in the rows [(2, 'abc', 'text')]"),
        ("real", "2.5, 'n/a'", "(declared REAL, read as real) holds values of another storage class, "
         "which would not load exactly, for example in the rows [(2, 'n/a', 'text')]"),
        ("datetime", "'2026-01-01 10:00:00', 1767261600", "(declared DATETIME, read as text) holds values of "
         "another storage class, which would not load exactly, for example in the rows [(2, '1767261600', 'integer')]"),
        ("", "'a', 7, 'b'", "(no declared type, read as text) holds values of another storage class, "
         "which would not load exactly, for example in the rows [(2, '7', 'integer')]"),
        # Text that SQLite's date functions write but connectorx does not parse.
        ("timestamp", "'2026-01-01 10:00:00', '2026-01-01', '2026-01-01T10:00:00.5', '2026-01-01T10:00:00Z'",
         "(declared TIMESTAMP) holds text that the reader does not take as a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff], "
         "no time zone), for example in the rows [(2, '2026-01-01'), (4, '2026-01-01T10:00:00Z')]"),
        ("date", "'2026-01-01', '2026-01-01 00:00:00'", "(declared DATE) holds text that the reader does not take "
         "as a date (YYYY-MM-DD), for example in the rows [(2, '2026-01-01 00:00:00')]"),
        # A double holds integers exactly up to 2**53 only: a DECIMAL read as REAL would round it.
        ("decimal(20,0)", "7, 9007199254740993", "(declared DECIMAL(20, 0)) holds integers beyond 2**53 (read as "
         "REAL, they would round), for example in the rows [(2, 9007199254740993)]"),
    ],
)  # fmt: skip
def test_a_sqlite_column_of_mixed_storage_classes_fails_naming_the_table_column_and_rows(
    ingestion, declared, values, message
):
    rows = ", ".join(f"({i}, {v}, '2026-01-01 00:00:00')" for i, v in enumerate(values.split(", "), start=1))
    ingestion.sql(
        f"create table part (p_partkey integer primary key, v {declared}, updated_at timestamp);"
        f"insert into part values {rows}"
    )
    ingestion.catalog_path.write_text(PART)
    result = ingestion.run("part")
    assert not result.success
    assert f"Table 'part', column 'v' {message} (p_partkey, v" in ingestion.failure_message(result)
    if ingestion.warehouse.exists():  # nothing was loaded
        assert ingestion.query("select * from information_schema.tables where table_name = 'part'") == []


def test_a_value_of_another_storage_class_in_an_hourly_load_fails_naming_it_and_keeps_raw(ingestion):
    ingestion.sql(
        "create table part (p_partkey integer primary key, v integer, updated_at timestamp);"
        "insert into part values (1, 5, '2026-01-01 00:00:00'), (2, 6, '2026-01-01 00:00:00')"
    )
    ingestion.catalog_path.write_text(PART)
    assert ingestion.run("part").success
    ingestion.sql("update part set v = 6.5, updated_at = '2026-07-01 00:00:00' where p_partkey = 2")
    result = ingestion.run("part")  # the direct merge of the changed row
    assert not result.success
    assert (
        "Table 'part', column 'v' (declared INTEGER, read as integer) holds values of another storage class, "
        "which would not load exactly, for example in the rows [(2, '6.5', 'real')]"
    ) in ingestion.failure_message(result)
    assert ingestion.query("select p_partkey, v from raw.part order by 1") == [(1, 5), (2, 6)]


def test_text_in_a_sqlite_decimal_column_fails_naming_the_table_column_and_rows(ingestion):
    ingestion.sql(
        "create table part (p_partkey integer primary key, p_retailprice decimal(15,2), "
        "updated_at timestamp);"
        "insert into part values (1, 901, '2026-01-01'), (2, 'n/a', '2026-01-01'), (3, '12.5', '2026-01-01')"
    )
    ingestion.catalog_path.write_text(PART)
    result = ingestion.run("part")
    assert not result.success
    assert (
        "Table 'part', column 'p_retailprice' (declared DECIMAL(15, 2)) holds text that is not a number, "
        "for example in the rows [(2, 'n/a')]"
    ) in ingestion.failure_message(result)
    assert not ingestion.warehouse.exists()  # nothing was loaded
