"""make discover on a schema that is not the demo one, then ingesting what it found."""

import sqlite3
import subprocess
import sys

import yaml

from platform_ingestion.discover import discover
from platform_shared import load_catalog

AWKWARD = """
create table "Order Items" ("Item ID" integer primary key, "Unit Price" numeric, updated_at timestamp);
create table "select" ("from" integer primary key, "where" text);
create table "weird ""quoted"" name" (id integer primary key, v text);
create table "orders; drop table customers" (id integer primary key, v text);
create table line_links (a integer, b integer, note text, modified_at timestamp, primary key (a, b));
create table audit_log (at timestamp, message text);
create table customer_loyalty_points_ledger_entries_by_quarter_2024 (id integer primary key, v text);
create table customer_loyalty_points_ledger_entries_by_quarter_2025 (id integer primary key, v text);
insert into customer_loyalty_points_ledger_entries_by_quarter_2024 values (1, 'a');
insert into customer_loyalty_points_ledger_entries_by_quarter_2025 values (1, 'b');
insert into "Order Items" values (1, 9.5, '2026-01-01 00:00:00'), (2, 0.25, '2026-01-02 00:00:00');
insert into "select" values (1, 'x');
insert into "weird ""quoted"" name" values (1, 'é');
insert into "orders; drop table customers" values (1, 'still here');
insert into line_links values (1, 2, 'n', '2026-01-01 00:00:00');
insert into audit_log values ('2026-01-01 00:00:00', 'started');
"""


def test_discover_maps_awkward_names_keys_and_cursors(ingestion):
    ingestion.sql(AWKWARD)
    tables = {t["source"]: t for t in discover(ingestion.source_url)["tables"]}
    assert tables["Order Items"] == {
        "source": "Order Items",
        "warehouse_name": "order_items_2",
        "primary_key": "Item ID",
        "load": "incremental",
        "cursor": "updated_at",
        "comment": "WARNING: no index on updated_at in the source: every incremental load scans the "
        "whole table. Index it in the application database.",
    }  # the demo's order_items already took that name
    assert "comment" not in tables["orders"]  # the demo schema indexes its cursors
    assert tables["select"]["primary_key"] == "from" and "warehouse_name" not in tables["select"]
    assert tables['weird "quoted" name']["warehouse_name"] == "weird_quoted_name"
    assert tables["line_links"]["primary_key"] == ["a", "b"]
    assert tables["line_links"]["cursor"] == "modified_at"
    assert "WARNING: no primary key" in tables["audit_log"]["comment"]
    assert "load" not in tables["audit_log"]
    # 55 bytes: cut to the 50 that PostgreSQL leaves room for; the second one cut alike.
    long = "customer_loyalty_points_ledger_entries_by_quarter_"
    assert tables[f"{long}2024"]["warehouse_name"] == "customer_loyalty_points_ledger_entries_by_quarter"
    assert tables[f"{long}2025"]["warehouse_name"] == "customer_loyalty_points_ledger_entries_by_quarte_2"


def test_a_discovered_catalog_ingests_every_table_under_safe_names(ingestion):
    ingestion.sql(AWKWARD)
    subprocess.run(
        [sys.executable, "-m", "platform_ingestion.discover", "--out", str(ingestion.catalog_path)],
        check=True,
    )
    catalog = load_catalog(ingestion.catalog_path)
    assert ingestion.run().success
    for table in catalog.tables:
        rows = ingestion.query(f'select count(*) from raw."{table.warehouse_name}"')[0][0]
        assert rows > 0, table
    assert ingestion.query('select "item_id", "unit_price" from raw.order_items_2 order by 1') == [(1, 9.5), (2, 0.25)]
    # The injected name was only ever an identifier: nothing was dropped.
    assert ingestion.query("select v from raw.orders_drop_table_customers") == [("still here",)]
    assert ingestion.query("select count(*) from raw.customers")[0][0] > 0
    with sqlite3.connect(ingestion.root / "app.db") as conn:
        assert conn.execute("select count(*) from customers").fetchall()[0][0] > 0


def test_discover_prints_a_catalog_to_stdout(ingestion):
    out = subprocess.run(
        [sys.executable, "-m", "platform_ingestion.discover"], check=True, capture_output=True, text=True
    ).stdout
    assert {"customers", "orders"} <= {t["source"] for t in yaml.safe_load(out)["attributes"]["tables"]}
