"""The hourly incremental load without a dlt pipeline (direct.py) loads what dlt loads."""

from datetime import datetime

import pytest

from platform_ingestion import direct
from platform_ingestion.reconcile import NotReconcilable, reconcile_table
from platform_shared import Warehouse, load_catalog
from platform_shared import settings as s
from platform_shared.demo_data import simulate_day

TABLES = ["customers", "products", "orders", "order_items", "payments", "web_sessions"]
COLUMNS = (
    "select column_name, data_type from information_schema.columns where table_schema = 'raw' "
    "and table_name = '{}' order by ordinal_position"
)


def _backends(result) -> dict[str, str]:
    return {
        e.asset_key.path[-1]: e.materialization.metadata["backend"].value
        for e in result.get_asset_materialization_events()
    }


def _tables(ingestion) -> dict:
    tables = {
        t: (ingestion.query(COLUMNS.format(t)), ingestion.query(f"select * from raw.{t} order by all")) for t in TABLES
    }
    tables["current history"] = ingestion.query(
        "select * exclude (valid_from, valid_to) from raw.customers_history where valid_to is null order by all"
    )
    return tables


def test_an_hourly_run_merges_without_dlt_and_loads_what_dlt_loads(ingestion, monkeypatch):
    assert _backends(ingestion.run())["orders"] == "connectorx"  # the first load: dlt
    counts = simulate_day(ingestion.source_url, seed=1)
    assert counts["inserted"] and counts["updated"] and counts["deleted"]
    hourly = ingestion.run()
    assert hourly.success
    assert _backends(hourly) == {"products": "connectorx", **{t: direct.BACKEND for t in TABLES if t != "products"}}
    for table in TABLES:
        ingestion.assert_raw_equals_source(table)
    merged = _tables(ingestion)
    # The same source, loaded by dlt alone into a new warehouse: the same rows, the same types.
    monkeypatch.setenv(s.WAREHOUSE_PATH, str(ingestion.root / "by_dlt.duckdb"))
    assert set(_backends(ingestion.run()).values()) == {"connectorx"}
    ingestion.warehouse = ingestion.root / "by_dlt.duckdb"
    assert _tables(ingestion) == merged


def test_the_direct_merge_hashes_rows_as_dlt_does(ingestion):
    # scd2 compares row hashes: a row that dlt loaded and the direct merge reads again
    # unchanged (the overlap window) must not get a second version.
    assert ingestion.run("customers").success
    versions = ingestion.query("select count(*) from raw.customers_history")
    again = ingestion.run("customers").get_asset_materialization_events()[0].materialization.metadata
    assert again["backend"].value == direct.BACKEND and again["rows_loaded"].value >= 1
    assert ingestion.query("select count(*) from raw.customers_history") == versions


EVENTS = """
tables:
  - source: events
    primary_key: event_id
    load: incremental
    cursor: updated_at
"""


def _events(ingestion):
    ingestion.sql(
        "create table events (event_id integer primary key, qty integer, body text, updated_at timestamp);"
        "insert into events values (1, 5, 'first', '2026-01-01 10:00:00');"
    )
    ingestion.catalog_path.write_text(EVENTS)
    assert ingestion.run("events").success
    return ingestion


def test_invalid_utf8_in_a_changed_row_is_read_again_by_dlt_replacing_it(ingestion):
    events = _events(ingestion)
    events.sql("insert into events values (2, 6, cast(x'41ff42' as text), '2026-01-02 10:00:00');")
    result = events.run("events")
    assert result.success
    assert _backends(result)["events"].startswith("pyarrow (invalid UTF-8 replaced")
    assert events.query("select event_id, body from raw.events order by 1") == [(1, "first"), (2, "A\ufffdB")]


def test_invalid_utf8_in_a_row_loaded_by_its_key_is_replaced(ingestion):
    # Regression: a row the cursor never reads (an old updated_at) is loaded by its key
    # after the key comparison, where no dlt load takes over: connectorx's panic on its
    # invalid UTF-8 failed the table on every run.
    events = _events(ingestion)
    events.sql("insert into events values (2, 6, cast(x'41ff42' as text), '2020-01-02 10:00:00');")
    result = events.run("events")
    assert result.success, events.failure_message(result)
    loaded = result.get_asset_materialization_events()[0].materialization.metadata
    assert (loaded["keys_compared"].value, loaded["rows_loaded_by_key"].value) == (True, 1)
    assert events.query("select event_id, qty, body, updated_at from raw.events order by 1") == [
        (1, 5, "first", datetime(2026, 1, 1, 10, 0)),
        (2, 6, "A\ufffdB", datetime(2020, 1, 2, 10, 0)),
    ]


def test_a_reconciliation_refuses_invalid_utf8_naming_the_table(ingestion):
    events = _events(ingestion)
    events.sql("update events set body = cast(x'41ff42' as text) where event_id = 1;")
    with pytest.raises(
        NotReconcilable, match=r"Table 'events': a text column holds invalid UTF-8.*Nothing was changed"
    ):
        reconcile_table(
            load_catalog(events.catalog_path).table("events"),
            warehouse=Warehouse(path=str(events.warehouse)),
            source_url=events.source_url,
            hash_key="test-only-key",
        )
    assert events.query("select body from raw.events") == [("first",)]


def test_a_changed_row_the_source_cannot_give_fails_naming_the_table_and_merges_nothing(ingestion):
    events = _events(ingestion)
    # SQLite keeps text in an integer column; connectorx refuses it.
    events.sql(
        "update events set body = 'second', updated_at = '2026-01-02 00:00:00' where event_id = 1;"
        "insert into events values (2, 'many', 'x', '2026-01-02 10:00:00');"
    )
    failed = events.run("events")
    assert not failed.success
    message = events.failure_message(failed)
    assert (
        "Table 'events', column 'qty' (declared INTEGER, read as integer) holds values of another storage class, "
        "which would not load exactly, for example in the rows [(2, 'many', 'text')] (event_id, qty, storage class). "
        "Nothing was loaded"
    ) in message
    assert events.query("select event_id, body from raw_stage.events") == [(1, "first")]
    assert events.query("select event_id, body from raw.events") == [(1, "first")]
    events.sql("update events set qty = 7 where event_id = 2")
    assert events.run("events").success
    events.assert_raw_equals_source("events")


def test_a_merge_that_fails_half_way_leaves_the_stage_as_it_was(ingestion, monkeypatch):
    events = _events(ingestion)
    events.sql(
        "update events set body = 'second', updated_at = '2026-01-02 00:00:00' where event_id = 1;"
        "insert into events values (2, 6, 'new', '2026-01-02 10:00:00');"
    )
    merge = direct._merge

    def merge_then_fail(conn, *args):
        merge(conn, *args)  # the stage has taken the delete and the insert
        raise RuntimeError("the warehouse went away")

    monkeypatch.setattr(direct, "_merge", merge_then_fail)
    failed = events.run("events")
    assert not failed.success and "Nothing was merged" in events.failure_message(failed)
    assert events.query("select event_id, body from raw_stage.events") == [(1, "first")]
    monkeypatch.setattr(direct, "_merge", merge)
    assert events.run("events").success
    events.assert_raw_equals_source("events")


def test_a_new_cursor_column_in_the_catalog_reads_the_whole_table_again(ingestion):
    # orders read by created_at miss a status change; the catalog moves to updated_at.
    catalog = ingestion.catalog_path.read_text()
    ingestion.catalog_path.write_text(
        catalog.replace(
            "  - source: orders\n    primary_key: order_id\n    load: incremental\n    cursor: updated_at",
            "  - source: orders\n    primary_key: order_id\n    load: incremental\n    cursor: created_at",
        )
    )
    assert ingestion.run("orders").success
    ingestion.sql(
        "update orders set status = 'returned', updated_at = '2031-01-01 00:00:00' "
        "where order_id = (select min(order_id) from orders)"
    )
    assert ingestion.run("orders").success  # by created_at: the change is not seen
    ingestion.catalog_path.write_text(catalog)
    moved = ingestion.run("orders").get_asset_materialization_events()[0].materialization.metadata
    assert moved["backend"].value == "connectorx"  # dlt, with no cursor state for updated_at
    ingestion.assert_raw_equals_source("orders")
    assert (
        ingestion.run("orders").get_asset_materialization_events()[0].materialization.metadata["backend"].value
        == direct.BACKEND
    )


def test_a_dlt_load_after_direct_merges_reads_only_the_overlap_window(ingestion):
    # dlt's own cursor stays at its last load while direct merges move on: a dlt load
    # after drift must not read (and, with history, version again) every row changed since.
    ingestion.catalog_path.write_text(
        ingestion.catalog_path.read_text().replace(
            "    history: scd2\n", "    history: scd2\n    on_column_dropped: ignore\n", 1
        )
    )
    assert ingestion.run("customers").success
    (last_day,) = ingestion.query("select count(*) from raw.customers where customer_id % 10 = 4")[0]
    for day in range(2, 5):
        ingestion.sql(
            f"update customers set country = 'Z{day}', updated_at = '2026-07-0{day} 00:00:00' "
            f"where customer_id % 10 = {day}"
        )
        assert _backends(ingestion.run("customers"))["customers"] == direct.BACKEND
    versions = ingestion.query("select count(*) from raw.customers_history")[0][0]
    ingestion.sql("alter table customers drop column first_name")
    drift = ingestion.run("customers").get_asset_materialization_events()[0].materialization.metadata
    assert drift["backend"].value == "connectorx" and drift["columns_dropped"].value == "first_name"
    # The overlap window below the last change: that day's customers, not the three days'.
    assert drift["rows_loaded"].value == last_day
    assert ingestion.query("select count(*) from raw.customers_history")[0][0] == versions + last_day


def test_a_column_added_with_a_default_is_filled_in_every_row(ingestion):
    # It was filled only in the rows that changed after it was added (4 of 12,058 orders in
    # a live try): an existing row's updated_at does not move when a column is added.
    assert ingestion.run("orders", "customers").success
    ingestion.sql(
        "alter table orders add column channel text not null default 'web';"
        "alter table customers add column tier integer default 1;"
        "update orders set status = 'shipped', updated_at = '2026-07-01 00:00:00' where order_id = 1"
    )
    result = ingestion.run("orders", "customers")
    assert result.success
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        assert metadata["backend"].value == "connectorx" and metadata["columns_filled"].value != "-"
    assert ingestion.query("select count(*), count(*) filter (channel = 'web') from raw.orders") == ingestion.query(
        "select count(*), count(*) from raw_stage.orders"
    )
    assert ingestion.query("select count(*) filter (tier is distinct from 1) from raw.customers") == [(0,)]
    ingestion.assert_raw_equals_source("orders")
    ingestion.assert_raw_equals_source("customers")
    # Every customer has a new version (its row now has a tier), and one current version.
    assert ingestion.query(
        "select count(*) filter (valid_to is null), count(distinct customer_id) from raw.customers_history"
    ) == ingestion.query("select count(*), count(*) from raw.customers")
    assert ingestion.query(
        "select data_type from information_schema.columns where table_schema = 'raw' "
        "and table_name = 'orders' and column_name = 'channel'"
    ) == [("VARCHAR",)]
    # The next run is an hourly one again.
    assert set(_backends(ingestion.run("orders", "customers")).values()) == {direct.BACKEND}
