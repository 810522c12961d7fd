"""The hourly incremental load without a dlt pipeline: the rows changed since the last
load, merged into the stage by SQL in one transaction.

Written by hand because dlt's fixed cost dominates a run that reads few rows: a
``pipeline.run`` costs about 0.2 s whatever it loads (resolving its configuration,
package files, state and schema tables) and merges through one more copy of the rows
(its staging dataset). With six tables that made an hourly run of a large database with
1% of its rows changed 0.16 of a full load; the target is 0.1. dlt still does every load
that needs more than a cursor and a merge: the first, a full refresh, a backfill, one
after schema drift, one whose text needs replacing (invalid UTF-8), full tables.

What is kept identical to dlt's load, so that either may load a table next time:
- the query: dlt's, the loaded columns ``where cursor >= high-water mark - overlap``,
  read by connectorx, with dlt's own fixes of connectorx's temporal columns;
- the maps of ``loading.build_resource`` (hashed personal data, the scd2 row hash, the
  generation), applied in its order;
- the types: the rows are cast to the staged table's columns, as DuckDB's ``INSERT ...
  BY NAME`` of dlt's files casts them;
- the merge: delete-insert on the primary key, or dlt's scd2 (retire the active version
  of each key read whose row hash changed, insert the versions not active yet, both at
  one UTC boundary timestamp).

The high-water mark is the largest cursor value among the staged rows: they are what
every earlier load merged, whichever loaded them. dlt's own cursor state is not moved,
so a later dlt load of the table reads from its own, older, mark: more rows, the same
result (the merge is idempotent).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from dlt.common.libs.pyarrow import cast_connectorx_temporal_columns, set_plus0000_timezone_to_utc
from platform_shared import CatalogTable
from platform_shared.warehouse import PostgresConnection

from .loading import (
    GENERATION_COLUMN,
    STAGE_SCHEMA,
    LoadResult,
    _add_generation,
    _row_hash,
    choose_backend,
    connectorx_url,
    invalid_utf8,
    pii_hasher,
)

class DirectLoadFailed(RuntimeError):
    """The changed rows of a table could not be read or merged; nothing was merged."""


BACKEND = "connectorx (direct merge, no dlt pipeline)"
_CHANGES = "_platform_changes"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def high_water_mark(conn, table: CatalogTable, cursor: str) -> datetime | None:
    """The largest cursor among the staged rows, if the cursor is a timestamp (dlt's lag
    is in seconds for those; any other cursor type is left to dlt)."""
    stage = f"{_quote(STAGE_SCHEMA)}.{_quote(table.warehouse_name)}"
    (mark,) = conn.execute(f"select max({_quote(cursor)}) from {stage}").fetchall()[0]
    return mark if isinstance(mark, datetime) else None


def _changed_rows(table: CatalogTable, *, source_url: str, reflected: sa.Table, columns: list[str],
                  start: datetime, hash_key: str, generation: int, names: dict[str, str]):
    """The source rows with a cursor at or above ``start``, as Arrow tables of at most
    ``chunk_rows`` rows, mapped and named as dlt would stage them."""
    import connectorx as cx

    query = sa.select(*[reflected.c[c] for c in columns]).where(reflected.c[table.cursor] >= start)
    sql = str(query.compile(sa.create_engine(source_url), compile_kwargs={"literal_binds": True}))
    maps = [
        *([pii_hasher(table.columns.hash, hash_key)] if table.columns.hash else []),
        *([_row_hash] if table.history == "scd2" else []),
        _add_generation(generation),
    ]
    reader = cx.read_sql(connectorx_url(source_url), sql, return_type="arrow_stream",
                         batch_size=table.chunk_rows, protocol="binary")
    for batch in reader:
        chunk = cast_connectorx_temporal_columns(set_plus0000_timezone_to_utc(pa.Table.from_batches([batch])))
        for m in maps:
            chunk = m(chunk)
        yield chunk.rename_columns([names.get(c, c) for c in chunk.column_names])


def load_changes(
    conn, table: CatalogTable, *, source_url: str, reflected: sa.Table, columns: list[str],
    names: dict[str, str], key_columns: list[str], generation: int, hash_key: str,
) -> LoadResult | None:
    """Merge the rows changed since the last load into ``raw_stage.<table>``, in one
    transaction; None (nothing done) when the table needs a dlt load instead.

    Raises:
        Whatever connectorx raises: the transaction is rolled back, the stage unchanged.
    """
    if choose_backend(source_url) != "connectorx" or not key_columns:
        return None
    cursor = names[table.cursor]
    mark = high_water_mark(conn, table, cursor)
    if mark is None:
        return None
    started = time.perf_counter()
    start = mark - timedelta(minutes=table.overlap_minutes)
    stage = f"{_quote(STAGE_SCHEMA)}.{_quote(table.warehouse_name)}"
    staged = [c for (c,) in conn.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [STAGE_SCHEMA, table.warehouse_name]).fetchall()]
    loaded = [names[c] for c in columns] + (["_dlt_id"] if table.history == "scd2" else []) + [GENERATION_COLUMN]
    if not set(loaded) <= set(staged):
        return None
    select = ", ".join(_quote(c) for c in loaded)
    rows = 0
    conn.execute("begin transaction")
    try:
        conn.execute(f"drop table if exists {_CHANGES}").fetchall()
        conn.execute(f"create temp table {_CHANGES} as select {select} from {stage} limit 0").fetchall()
        for chunk in _changed_rows(table, source_url=source_url, reflected=reflected, columns=columns,
                                   start=start, hash_key=hash_key, generation=generation, names=names):
            rows += _append(conn, chunk.select(loaded))
        if table.history == "scd2":
            _merge_scd2(conn, stage, select, key_columns)
        else:
            match = " and ".join(f"s.{_quote(c)} = c.{_quote(c)}" for c in key_columns)
            conn.execute(f"delete from {stage} as s where exists (select 1 from {_CHANGES} as c where {match})").fetchall()
            conn.execute(f"insert into {stage} ({select}) select {select} from {_CHANGES}").fetchall()
        (newest,) = conn.execute(f"select max({_quote(cursor)}) from {_CHANGES}").fetchall()[0]
        conn.execute(f"drop table {_CHANGES}").fetchall()
        conn.execute("commit")
    except BaseException as exc:
        conn.execute("rollback")
        if invalid_utf8(exc, source_url) or not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise  # invalid UTF-8: the caller has dlt read the table again; Ctrl-C: stop
        # Not a PlatformError: a transient source error in the cause is retried.
        raise DirectLoadFailed(
            f"Table {table.source!r}: reading its changed rows (cursor {table.cursor} >= {start}) or merging "
            f"them into {STAGE_SCHEMA}.{table.warehouse_name} failed: {exc}. Nothing was merged: "
            f"{STAGE_SCHEMA}.{table.warehouse_name} and raw.{table.warehouse_name} are unchanged."
        ) from exc
    return LoadResult(table.warehouse_name, rows, time.perf_counter() - started, BACKEND,
                      max(newest, mark) if newest is not None else mark)


def _append(conn, chunk: pa.Table) -> int:
    if isinstance(conn, PostgresConnection):
        return conn.copy_arrow(_CHANGES, chunk.to_batches())
    conn.register("_platform_chunk", chunk)
    try:
        # By name, cast to the staged columns' types, as dlt's DuckDB load of its files.
        conn.execute(f"insert into {_CHANGES} by name select * from _platform_chunk").fetchall()
    finally:
        conn.unregister("_platform_chunk")
    return chunk.num_rows


def _merge_scd2(conn, stage: str, select: str, key_columns: list[str]) -> None:
    """dlt's scd2 with the primary key as merge key (``gen_scd2_sql``): the active version
    of each key read is retired unless its row hash was read again; each row read whose
    hash is not an active version's becomes the active version. One boundary: now, UTC."""
    boundary = datetime.now(timezone.utc)
    match = " and ".join(f"s.{_quote(c)} = c.{_quote(c)}" for c in key_columns)
    conn.execute(
        f"update {stage} as s set _dlt_valid_to = ? where _dlt_valid_to is null "
        f"and exists (select 1 from {_CHANGES} as c where {match}) "
        f"and not exists (select 1 from {_CHANGES} as c where c._dlt_id = s._dlt_id)", [boundary],
    ).fetchall()
    conn.execute(
        f"insert into {stage} ({select}, _dlt_valid_from, _dlt_valid_to) "
        f"select {select}, ?, null from {_CHANGES} as c "
        f"where not exists (select 1 from {stage} as s where s._dlt_id = c._dlt_id and s._dlt_valid_to is null)",
        [boundary],
    ).fetchall()
