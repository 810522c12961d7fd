"""Loads into a PostgreSQL warehouse (WAREHOUSE=postgres)."""

import sqlite3

import sqlalchemy as sa

from platform_ingestion import direct
from platform_ingestion.engine import ingest_table
from platform_ingestion.loading import POSTGRES_LOADER_WORK_MEM, LoadRequest, build_pipeline
from platform_shared import CatalogTable, Warehouse


def test_the_loader_sessions_get_the_work_mem_of_a_hashed_scd2_merge(postgres_database, tmp_path):
    # Regression: with PostgreSQL's default 4 MB, dlt's scd2 merge (`not in (select ...)`)
    # rescanned its subquery for every row, and re-ingesting 200,000 customers ran for more
    # than ten minutes (make bench at scale 100).
    table = CatalogTable("customers", "customers", ("customer_id",))
    pipeline = build_pipeline(
        table, warehouse=Warehouse(kind="postgres", url=postgres_database), pipelines_dir=tmp_path
    )
    with pipeline.sql_client() as client:
        assert client.execute_sql("show work_mem") == [(POSTGRES_LOADER_WORK_MEM,)]


def test_empty_text_stays_empty_text_in_postgres_whichever_path_loads_it(postgres_database, tmp_path):
    # dlt's CSV COPY loaded empty text as NULL in nullable columns (and the direct merge
    # did the same, so that a full refresh changed nothing): silently not the source.
    # dlt now loads Parquet through ADBC, and the direct merge quotes every value.
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.executescript(
            "create table notes (note_id integer primary key, body text, tags text, updated_at timestamp);"
            "insert into notes values (1, '', 'a,b', '2026-01-01 00:00:00'), (2, null, '\"q\"', '2026-01-01 00:00:00');"
        )
    table = CatalogTable("notes", "notes", ("note_id",), load="incremental", cursor="updated_at")
    warehouse = Warehouse(kind="postgres", url=postgres_database)

    def ingest(**request) -> str:
        return ingest_table(
            table,
            request=LoadRequest(**request),
            warehouse=warehouse,
            hash_key="test-only-key",
            source_url=f"sqlite:///{tmp_path / 'app.db'}",
            pipelines_dir=tmp_path / "dlt",
        )["backend"]

    def rows() -> list:
        engine = sa.create_engine(postgres_database)
        with engine.connect() as conn:
            found = conn.execute(sa.text("select note_id, body, tags from raw.notes order by 1")).all()
        engine.dispose()
        return found

    assert ingest() == "connectorx"
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.executescript(
            "insert into notes values (3, '', 'ü, \"x\"', '2026-01-02 00:00:00');"
            "update notes set body = 'now', updated_at = '2026-01-02 00:00:00' where note_id = 2;"
        )
    assert ingest() == direct.BACKEND
    merged = rows()
    assert merged == [(1, "", "a,b"), (2, "now", '"q"'), (3, "", 'ü, "x"')]
    assert ingest(full_refresh=True) == "connectorx"
    assert rows() == merged


def test_a_second_load_of_a_table_waits_for_the_first_on_postgres(ingestion, postgres_database):
    # The server pool lets several steps run at once: two runs of one table interleaved
    # their merges. The load takes a lock of the table in the warehouse first.
    import threading
    import time

    from platform_ingestion import engine
    from platform_shared import load_catalog
    from platform_shared.warehouse import PostgresConnection

    orders = load_catalog(ingestion.catalog_path).table("orders")
    warehouse = Warehouse(kind="postgres", url=postgres_database)

    def load() -> None:
        done.append(
            engine.ingest_table(
                orders,
                request=LoadRequest(),
                warehouse=warehouse,
                source_url=ingestion.source_url,
                pipelines_dir=ingestion.root / "dlt",
                hash_key="test-only-key",
            )["rows_loaded"]
        )

    done: list[int] = []
    holder = PostgresConnection(postgres_database)
    holder.execute("select pg_advisory_lock(?)", [engine.table_lock_id(orders)]).fetchall()
    waiting = threading.Thread(target=load)
    waiting.start()
    time.sleep(3)
    assert waiting.is_alive() and done == []  # queued behind the lock, nothing loaded
    holder.execute("select pg_advisory_unlock(?)", [engine.table_lock_id(orders)]).fetchall()
    waiting.join(timeout=60)
    assert done and done[0] > 0
    holder.close()
    first, second = threading.Thread(target=load), threading.Thread(target=load)
    first.start(), second.start()
    first.join(timeout=60), second.join(timeout=60)
    assert len(done) == 3
    ingestion.warehouse_url = postgres_database
    ingestion.assert_raw_equals_source("orders")


def test_reconcile_repairs_a_postgres_warehouse(ingestion, postgres_database, monkeypatch):
    from platform_ingestion.reconcile import reconcile_table
    from platform_shared import load_catalog
    from platform_shared import settings as s

    monkeypatch.setenv(s.WAREHOUSE, "postgres")
    monkeypatch.setenv(s.WAREHOUSE_URL, postgres_database)
    monkeypatch.setenv(s.PII_HASH_KEY, "test-only-key")
    ingestion.warehouse_url = postgres_database
    assert ingestion.run("orders", "customers").success
    ingestion.sql(
        "update orders set status = 'returned', updated_at = '2024-01-01 00:00:00' where order_id = 3;"
        "update customers set country = 'ZZ', updated_at = '2024-01-01 00:00:00' where customer_id = 4"
    )
    warehouse = Warehouse(kind="postgres", url=postgres_database)
    for table in ("orders", "customers"):
        found, _ = reconcile_table(
            load_catalog(ingestion.catalog_path).table(table),
            warehouse=warehouse,
            source_url=ingestion.source_url,
            hash_key="test-only-key",
        )
        assert (found.missing, found.extra, found.different) == (0, 0, 1)
        ingestion.assert_raw_equals_source(table)
