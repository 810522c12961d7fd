"""Reads of the source that must agree with each other, in one read transaction.

The audit compares the staged rows with the source. Read one after the other, a
commit in between makes a row count and a list of keys disagree, and a live
application commits all the time. So the source's row count, its smallest and largest
key and, when those differ from the stage, all its keys, are read in one snapshot:
SQLite (in WAL mode) keeps the snapshot of a transaction's first read until it ends;
PostgreSQL does so in a REPEATABLE READ transaction. What was committed after that
snapshot is for the next run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import event

from platform_shared import CatalogTable
from platform_shared.warehouse import quote


@contextmanager
def source_snapshot(source_url: str) -> Iterator[sa.Connection]:
    """A connection to the source whose every read sees the same committed state."""
    engine = sa.create_engine(source_url, poolclass=sa.NullPool)
    options: dict[str, Any] = {}
    if engine.dialect.name == "sqlite":
        # pysqlite starts no transaction before a SELECT: each would read its own state.
        # Take over: no implicit transactions, and an explicit BEGIN (SQLAlchemy's recipe).
        @event.listens_for(engine, "connect")
        def _no_implicit(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            conn.exec_driver_sql("begin")
    elif engine.dialect.name == "postgresql":
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    try:
        with engine.connect().execution_options(**options) as conn, conn.begin():
            yield conn
    finally:
        engine.dispose()


def _table(table: CatalogTable, *columns: str) -> sa.TableClause:
    return sa.table(table.source, *(sa.column(c) for c in columns), schema=table.schema)


# Integer keys are summed modulo this prime: no overflow, on any database, however large.
KEY_SUM_MODULUS = 1_000_003


def key_summary(conn: sa.Connection, table: CatalogTable) -> tuple[int, Any, Any, int | None]:
    """The row count, the smallest and largest value of the first key column and, when it
    is an integer, the sum of its values (modulo ``KEY_SUM_MODULUS``). The bounds come
    from the key's index; the count and the sum each scan one index (SQLite takes the
    narrowest that holds the rowid: 0.06 s and 0.22 s for 4 million rows here). The sum
    tells a key missed by the cursor from one deleted in the source when the two offset
    each other's count and bounds; with a composite key only the first column is summed,
    so two rows that share it still offset (the daily reconciliation finds them)."""
    source = _table(table, table.primary_key[0])
    key = source.c[table.primary_key[0]]
    count, low, high = conn.execute(
        sa.select(
            sa.select(sa.func.count()).select_from(source).scalar_subquery(),
            sa.select(sa.func.min(key)).scalar_subquery(),
            sa.select(sa.func.max(key)).scalar_subquery(),
        )
    ).one()
    total = None
    if isinstance(low, int) and not isinstance(low, bool):
        total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(key % KEY_SUM_MODULUS), 0))).scalar_one()
    return count, low, high, total


def keys(conn: sa.Connection, table: CatalogTable, names: list[str]) -> pa.RecordBatchReader:
    """Every primary key of the source, one narrow column per key part renamed to its
    warehouse name, as batches of ``chunk_rows``: memory stays flat however large the
    table. Read it before the snapshot ends.

    Fetched with the driver's own cursor, in the snapshot's transaction: SQLAlchemy's
    rows cost three times the read (2.3 s of the 5.3 s a 900,000-key comparison took).
    On SQLite, most tables' keys come as text that SQLite writes itself (``_sqlite_keys``),
    which the warehouse casts to the staged key types as it appends them."""
    if conn.dialect.name == "sqlite" and _rowid_table_without_blob_keys(conn, table):
        return _sqlite_keys(conn, table, names)
    query = sa.select(*[sa.column(c) for c in table.primary_key]).select_from(_table(table))
    sql = str(query.compile(conn.engine, compile_kwargs={"literal_binds": True}))
    dbapi = conn.connection.dbapi_connection
    if dbapi is None:  # (SQLAlchemy's type allows it: a connection already closed)
        raise RuntimeError(f"Table {table.source!r}: the source connection closed before its keys were read")
    # PostgreSQL streams through a server-side (named) cursor; SQLite's cursor steps anyway.
    cursor = dbapi.cursor("platform_keys") if conn.dialect.name == "postgresql" else dbapi.cursor()
    cursor.execute(sql)

    def chunks():
        try:
            while rows := cursor.fetchmany(table.chunk_rows):
                yield [list(values) for values in zip(*rows, strict=True)]
        finally:
            cursor.close()

    parts = chunks()
    first = next(parts, None)
    if first is None:
        # Typed null: it casts to any key type (an int64 column would not cast to a date).
        return pa.RecordBatchReader.from_batches(pa.table({n: pa.array([], pa.null()) for n in names}).schema, [])
    # The first chunk's types hold for the rest (one SQL type per key column).
    head = pa.table(dict(zip(names, first, strict=True)))

    def batches() -> Iterator[pa.RecordBatch]:
        yield from head.to_batches()
        for part in parts:
            yield from pa.table(dict(zip(names, part, strict=True)), schema=head.schema).to_batches()

    return pa.RecordBatchReader.from_batches(head.schema, batches())


def _rowid_table_without_blob_keys(conn: sa.Connection, table: CatalogTable) -> bool:
    """Whether ``_sqlite_keys`` can read the table's keys: a rowid table (not WITHOUT
    ROWID) whose key columns are declared with a type that is not a blob's (a blob's
    text is not its value)."""
    schema = f"{quote(table.schema)}." if table.schema else ""
    (sql,) = conn.exec_driver_sql(
        f"select sql from {schema}sqlite_master where type = 'table' and name = ?", (table.source,)
    ).one()
    info = conn.exec_driver_sql(f"pragma {schema}table_info({quote(table.source)})").all()
    declared = {r[1]: r[2].upper() for r in info}
    return "WITHOUT ROWID" not in sql.upper() and all(
        declared.get(k) and "BLOB" not in declared[k] for k in table.primary_key
    )


def _sqlite_keys(conn: sa.Connection, table: CatalogTable, names: list[str]) -> pa.RecordBatchReader:
    """Every key of a SQLite table as text columns named ``names``, in batches of
    ``chunk_rows`` rowids: SQLite writes each batch as JSON lines (``json_object``
    escapes any text; a NULL stays null) and pyarrow parses them.

    Why: the driver's rows, turned into Arrow in Python, were most of a key comparison's
    cost (`make bench SCALES=100`, the "1% changed" run: 0.84 of a full load before, 0.46
    after; docs/performance.md)."""
    import io

    import pyarrow.json as pj

    # json_object's field names are text literals, not identifiers.
    pairs = ", ".join(
        f"'{n.replace(chr(39), chr(39) * 2)}', cast({quote(c)} as text)"
        for n, c in zip(names, table.primary_key, strict=True)
    )
    source = f"{quote(table.schema)}.{quote(table.source)}" if table.schema else quote(table.source)
    schema = pa.schema([(n, pa.string()) for n in names])
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")

    def batches() -> Iterator[pa.RecordBatch]:
        after = "1"  # no bound before the first batch: rowids may be negative
        while True:
            top, lines = conn.exec_driver_sql(
                f"select max(r), group_concat(j, char(10)) from (select rowid as r, json_object({pairs}) as j "
                f"from {source} where {after} order by rowid limit {int(table.chunk_rows)})"
            ).one()
            if top is None:
                return
            yield from pj.read_json(io.BytesIO(lines.encode()), parse_options=parse).to_batches()
            after = f"rowid > {int(top)}"

    return pa.RecordBatchReader.from_batches(schema, batches())
