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
from platform_shared import CatalogTable


@contextmanager
def source_snapshot(source_url: str) -> Iterator[sa.Connection]:
    """A connection to the source whose every read sees the same committed state."""
    engine = sa.create_engine(source_url, poolclass=sa.NullPool)
    options: dict[str, Any] = {}
    if engine.dialect.name == "sqlite":
        # pysqlite starts no transaction before a SELECT: each would read its own state.
        # Take over: no implicit transactions, and an explicit BEGIN (SQLAlchemy's recipe).
        @sa.event.listens_for(engine, "connect")
        def _no_implicit(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
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


def key_summary(conn: sa.Connection, table: CatalogTable) -> tuple[int, Any, Any]:
    """The row count and the smallest and largest value of the first key column: three
    subqueries, each of which the database answers from an index (one query with all
    three aggregates would scan the table)."""
    source = _table(table, table.primary_key[0])
    key = source.c[table.primary_key[0]]
    return tuple(conn.execute(sa.select(
        sa.select(sa.func.count()).select_from(source).scalar_subquery(),
        sa.select(sa.func.min(key)).scalar_subquery(),
        sa.select(sa.func.max(key)).scalar_subquery(),
    )).one())


def keys(conn: sa.Connection, table: CatalogTable, names: list[str]) -> pa.RecordBatchReader:
    """Every primary key of the source, one narrow column per key part renamed to its
    warehouse name, as batches of ``chunk_rows``: memory stays flat however large the
    table. Read it before the snapshot ends."""
    query = sa.select(*[sa.column(c) for c in table.primary_key]).select_from(_table(table))
    result = conn.execution_options(yield_per=table.chunk_rows).execute(query)
    chunks = ({n: list(values) for n, values in zip(names, zip(*rows))} for rows in result.partitions())
    first = next(chunks, None)
    if first is None:
        return pa.RecordBatchReader.from_batches(pa.table({n: pa.array([], pa.int64()) for n in names}).schema, [])
    # The first chunk's types hold for the rest (one SQL type per key column).
    first = pa.table(first)

    def batches() -> Iterator[pa.RecordBatch]:
        yield from first.to_batches()
        for chunk in chunks:
            yield from pa.table(chunk, schema=first.schema).to_batches()

    return pa.RecordBatchReader.from_batches(first.schema, batches())
