"""The warehouse interface on both dialects: DuckDB files and a PostgreSQL database."""

import threading
import time
from datetime import date

import duckdb
import psycopg2
import pyarrow as pa
import pytest

from platform_shared import Warehouse, replace_table
from platform_shared.errors import WarehouseError
from platform_shared.warehouse import (
    append_arrow,
    column_types,
    exclusive,
    hash_values,
    quote,
    rollback,
    temp_relation,
)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request, tmp_path) -> Warehouse:
    if request.param == "duckdb":
        return Warehouse(path=str(tmp_path / "w.duckdb"))
    return Warehouse(kind="postgres", url=request.getfixturevalue("postgres_database"))


def _rows(conn, sql: str) -> list[tuple]:
    return sorted(conn.execute(sql).fetchall())


def test_replacing_a_table_keeps_the_views_that_read_it(warehouse):
    with warehouse.connect() as conn:
        conn.execute("create schema raw").fetchall()
        replace_table(conn, "raw", "t", "select 1 as id, 'a' as name")
        conn.execute("create view raw.v as select id, name from raw.t").fetchall()
        conn.execute("create view raw.vv as select count(*) as n from raw.v").fetchall()
        replace_table(conn, "raw", "t", "select 2 as id, 'b' as name union all select 3, 'c'")
        assert _rows(conn, "select * from raw.v") == [(2, "b"), (3, "c")]
        # A column added: the views stay.
        replace_table(conn, "raw", "t", "select 4 as id, 'd' as name, 1.5 as score")
        assert _rows(conn, "select * from raw.v") == [(4, "d")]
        # A column retyped (a full refresh after drift): the views are there again.
        replace_table(conn, "raw", "t", "select cast(5 as bigint) as id, 'e' as name, 2.5 as score")
        assert _rows(conn, "select * from raw.v") == [(5, "e")] and _rows(conn, "select * from raw.vv") == [(1,)]


def test_a_view_that_no_longer_fits_stops_the_replace_naming_it(postgres_database):
    warehouse = Warehouse(kind="postgres", url=postgres_database)
    with warehouse.connect() as conn:
        conn.execute("create schema raw").fetchall()
        replace_table(conn, "raw", "t", "select 1 as id, 'a' as name")
        conn.execute("create view raw.v as select name from raw.t").fetchall()
        conn.execute("begin").fetchall()
        with pytest.raises(WarehouseError, match=r"would drop the view raw\.v, which no longer fits it"):
            replace_table(conn, "raw", "t", "select 2 as id")
        conn.execute("rollback").fetchall()
        assert _rows(conn, "select * from raw.v") == [("a",)]


def test_copy_keeps_empty_text_apart_from_null(postgres_database):
    warehouse = Warehouse(kind="postgres", url=postgres_database)
    batch = pa.record_batch({"id": [1, 2, 3], "body": ["", None, 'a,"b"']})
    with warehouse.connect() as conn:
        conn.execute("create table t (id bigint, body text)").fetchall()
        assert conn.copy_arrow("t", [batch]) == 3
        assert _rows(conn, "select id, body from t") == [(1, ""), (2, None), (3, 'a,"b"')]


def test_a_fetch_of_a_statement_without_rows_counts_the_rows_it_touched(warehouse):
    with warehouse.connect() as conn:
        conn.execute("create table t (id integer)").fetchall()
        assert conn.execute("insert into t values (1), (2)").fetchall() == [(2,)]
        assert conn.execute("delete from t where id = ?", [1]).fetchall() == [(1,)]


def test_arrow_appends_by_name_cast_to_the_tables_types(warehouse):
    data = pa.table({"day": ["2026-01-02", None], "body": ["", "x"], "id": pa.array([1, 2], pa.int32())})
    with warehouse.connect() as conn:
        conn.execute("create table t (id bigint, body text, day date)").fetchall()
        assert append_arrow(conn, "t", data) == 2
        assert append_arrow(conn, "t", data.to_reader()) == 2
        assert _rows(conn, "select id, body, day from t") == [
            (1, "", date(2026, 1, 2)),
            (1, "", date(2026, 1, 2)),
            (2, "x", None),
            (2, "x", None),
        ]
        # The declared types, whatever the Arrow types were.
        declared = _rows(conn, "select column_name, data_type from information_schema.columns where table_name = 't'")
        assert [(c, t.lower()) for c, t in declared] == [
            ("body", "text" if warehouse.kind == "postgres" else "varchar"),
            ("day", "date"),
            ("id", "bigint"),
        ]


def test_an_arrow_append_can_land_a_key_and_a_hash_of_the_values_cast_to_a_tables_types(warehouse):
    # Reconciliation lands each source row as its key and the hash of its values: the hash
    # must equal the staged row's exactly when the values do once cast to the staged types
    # (a float read from SQLite becomes the declared decimal), and tell NULL from ''.
    data = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int32()),
            "body": ["", None, "x", "x"],
            "day": ["2026-01-02", None, None, "2026-01-03"],
            "price": [901.499, 1.0, 2.0, 3.0],
        }
    )
    with warehouse.connect() as conn:
        conn.execute("create schema s").fetchall()
        conn.execute("create table s.t (id bigint, body text, day date, price decimal(12, 2))").fetchall()
        conn.execute(
            "insert into s.t values (1, '', '2026-01-02', 901.50), (2, '', null, 1), (3, 'x', null, 2), "
            "(4, 'x', '2026-01-04', 3)"
        ).fetchall()
        types = column_types(conn, "s", "t")
        assert types["price"].lower() in ("decimal(12,2)", "numeric(12,2)")
        cast = [f"cast({quote(c)} as {types[c]})" for c in ("body", "day", "price")]
        hashes = temp_relation(conn, "h")
        conn.execute(
            f"create temp table h as select id, {hash_values(conn, ['body', 'day', 'price'])} as h from s.t limit 0"
        ).fetchall()
        assert (
            append_arrow(conn, hashes, data, select=f"cast(id as bigint), {hash_values(conn, cast)}", like="s.t") == 4
        )
        staged = hash_values(conn, ["t.body", "t.day", "t.price"])
        assert _rows(conn, f"select h.id from {hashes} as h join s.t as t on t.id = h.id where h.h = {staged}") == [
            (1,),
            (3,),
        ]


def test_a_temporary_table_is_dropped_by_its_qualified_name_only(warehouse):
    with warehouse.connect() as conn:
        conn.execute("create table _scratch (id integer)").fetchall()
        conn.execute("insert into _scratch values (1)").fetchall()
        conn.execute("create temp table _scratch (id integer)").fetchall()
        conn.execute(f"drop table {temp_relation(conn, '_scratch')}").fetchall()
        conn.execute(f"drop table if exists {temp_relation(conn, '_scratch')}").fetchall()
        assert _rows(conn, "select id from _scratch") == [(1,)]


def test_a_rollback_that_fails_raises_nothing(warehouse):
    """It runs in an error handler: the error that called for it must reach the user."""
    with warehouse.connect() as conn:
        if warehouse.kind == "postgres":
            conn.execute("begin").fetchall()
            with warehouse.connect() as admin:  # the connection is cut, as by a server restart
                admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity where pid <> pg_backend_pid() "
                    "and datname = current_database()"
                ).fetchall()
        # DuckDB: no transaction is open; PostgreSQL: the connection is gone.
        failure = duckdb.Error if warehouse.kind == "duckdb" else psycopg2.Error
        with pytest.raises(failure):
            conn.execute("rollback").fetchall()
        rollback(conn)


def test_exclusive_queues_a_second_holder_on_the_server(postgres_database):
    warehouse = Warehouse(kind="postgres", url=postgres_database)
    held, order = threading.Event(), []

    def second():
        with warehouse.connect() as conn:
            held.wait()
            with exclusive(conn, 42):
                order.append("second")

    thread = threading.Thread(target=second)
    with warehouse.connect() as conn:
        with exclusive(conn, 42):
            thread.start()
            held.set()
            time.sleep(1)
            order.append("first")
    thread.join(10)
    assert order == ["first", "second"]
