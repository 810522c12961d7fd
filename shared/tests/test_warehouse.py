"""The warehouse interface on both dialects: DuckDB files and a PostgreSQL database."""

import pyarrow as pa
import pytest
from platform_shared import Warehouse, replace_table
from platform_shared.errors import WarehouseError


@pytest.fixture(params=["duckdb", "postgres"])
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
