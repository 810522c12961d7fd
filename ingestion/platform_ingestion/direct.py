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
every earlier load merged, whichever loaded them. A dlt load of a published table reads
the same window (given as a range, so dlt neither reads nor moves its own cursor state,
which stays at dlt's last state-based load); only when the catalog names another cursor
column or history mode than the table was published with does dlt's state decide.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import sqlalchemy as sa
from dlt.common.libs.pyarrow import cast_connectorx_temporal_columns, set_plus0000_timezone_to_utc

from platform_shared import CatalogTable
from platform_shared.warehouse import analyze, append_arrow, empty_temp_table, quote, relation, rollback, temp_relation

from .loading import (
    GENERATION_COLUMN,
    STAGE_SCHEMA,
    LoadResult,
    add_generation,
    choose_backend,
    connectorx_url,
    invalid_utf8,
    pii_hasher,
    read_columns,
    row_hash,
)


class DirectLoadFailed(RuntimeError):
    """The changed rows of a table could not be read or merged."""


BACKEND = "connectorx (direct merge, no dlt pipeline)"
_CHANGES = "_platform_changes"


def high_water_mark(conn, table: CatalogTable, cursor: str) -> date | None:
    """The largest cursor among the staged rows, if the cursor is a timestamp or a date
    (a datetime is a date too); any other cursor type is left to dlt."""
    stage = relation(STAGE_SCHEMA, table.warehouse_name)
    (mark,) = conn.execute(f"select max({quote(cursor)}) from {stage}").fetchall()[0]
    return mark if isinstance(mark, date) else None


def end_of_time(mark: date) -> date:
    """An end for dlt's cursor window that no row reaches (aware if ``mark`` is)."""
    if not isinstance(mark, datetime):
        return date(9999, 12, 31)
    return datetime(9999, 12, 31, tzinfo=mark.tzinfo)


def load_maps(table: CatalogTable, *, hash_key: str, generation: int | None) -> list:
    """The maps of ``loading.build_resource``, in its order."""
    return [
        *([pii_hasher(table.columns.hash, hash_key)] if table.columns.hash else []),
        *([row_hash] if table.history == "scd2" else []),
        *([add_generation(generation)] if generation is not None else []),
    ]


def read_rows(
    table: CatalogTable,
    *,
    source_url: str,
    queries,
    maps: list,
    names: dict[str, str],
    replace_invalid_utf8: bool = False,
    at_once: bool = False,
):
    """The rows of each query, as Arrow tables of at most ``chunk_rows`` rows, mapped by
    ``maps`` (``load_maps``: as dlt would stage them) and named as dlt names them.

    ``at_once``: the queries are read together, each on its own connection and thread
    (connectorx), their batches interleaved; so each is its own snapshot of the source
    (not with ``replace_invalid_utf8``).

    ``replace_invalid_utf8``: a query whose rows hold invalid UTF-8 (connectorx panics on
    it) is read again by Python's sqlite3, each invalid byte replaced by U+FFFD as dlt's
    pyarrow backend replaces it; for the few rows read by key (``load_keys``), where no
    dlt load can take over. Each such query's rows are read whole before any is yielded."""
    import connectorx as cx

    if at_once and replace_invalid_utf8:
        raise ValueError("read_rows: queries read at once cannot be read again one by one (replace_invalid_utf8)")
    engine = sa.create_engine(source_url)
    compiled = [str(query.compile(engine, compile_kwargs={"literal_binds": True})) for query in queries]
    for together in [compiled] if at_once else [[sql] for sql in compiled]:
        sql = together[0]
        try:
            reader = cx.read_sql(
                connectorx_url(source_url),
                together if len(together) > 1 else sql,
                return_type="arrow_stream",
                batch_size=table.chunk_rows,
                protocol="binary",
            )
            if replace_invalid_utf8:
                reader = list(reader)  # whole: a panic comes before any row is yielded
        except BaseException as exc:
            if not (replace_invalid_utf8 and invalid_utf8(exc, source_url)):
                raise
            reader = _read_replacing_invalid_utf8(source_url, sql)
        for batch in reader:
            chunk = cast_connectorx_temporal_columns(set_plus0000_timezone_to_utc(pa.Table.from_batches([batch])))
            for m in maps:
                chunk = m(chunk)
            yield chunk.rename_columns([names.get(c, c) for c in chunk.column_names])


def _read_replacing_invalid_utf8(source_url: str, sql: str) -> list[pa.RecordBatch]:
    """The rows of ``sql`` from a SQLite source through Python's sqlite3, invalid UTF-8
    replaced by U+FFFD. The warehouse casts each column to its staged type as it appends
    them (a datetime arrives as its text here)."""
    import sqlite3
    from contextlib import closing

    path = sa.engine.make_url(source_url).database
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
        cursor = conn.execute(sql)
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)}).to_batches()


def load_changes(
    conn,
    table: CatalogTable,
    *,
    mark: datetime,
    reflected: sa.Table,
    columns: list[str],
    source_url: str,
    **kwargs,
) -> LoadResult | None:
    """Merge the rows changed since the last load (``mark``, see ``high_water_mark``) into
    ``raw_stage.<table>``; None (nothing done) when the table needs a dlt load instead.
    Arguments as ``merge_rows``.

    Raises:
        DirectLoadFailed: naming the table; the stage is unchanged.
    """
    start = mark - timedelta(minutes=table.overlap_minutes)
    query = sa.select(*read_columns(reflected, columns, source_url)).where(reflected.c[table.cursor_column] >= start)
    return merge_rows(
        conn,
        table,
        queries=[query],
        what=f"its changed rows (cursor {table.cursor} >= {start})",
        mark=mark,
        columns=columns,
        source_url=source_url,
        **kwargs,
    )


# Keys per query when rows are read by key: well under SQLite's limit of terms.
_KEYS_PER_QUERY = 500


def load_keys(
    conn,
    table: CatalogTable,
    *,
    keys: list[tuple],
    reflected: sa.Table,
    columns: list[str],
    source_url: str,
    why: str = "missing from the stage",
    **kwargs,
) -> LoadResult | None:
    """Merge the source rows of ``keys`` (source keys the stage lacks, or ``why`` else they
    are read again) into the stage, as ``merge_rows``; a key deleted meanwhile has no row,
    and the result counts only rows read."""
    parts = [reflected.c[c] for c in table.primary_key]
    key = sa.tuple_(*parts) if len(parts) > 1 else parts[0]
    values = keys if len(table.primary_key) > 1 else [k[0] for k in keys]
    select = read_columns(reflected, columns, source_url)
    queries = [
        sa.select(*select).where(key.in_(values[i : i + _KEYS_PER_QUERY]))
        for i in range(0, len(values), _KEYS_PER_QUERY)
    ]
    return merge_rows(
        conn,
        table,
        queries=queries,
        what=f"the rows of {len(keys)} key(s) {why}",
        columns=columns,
        source_url=source_url,
        replace_invalid_utf8=True,
        **kwargs,
    )


def merge_rows(
    conn,
    table: CatalogTable,
    *,
    queries,
    what: str,
    source_url: str,
    columns: list[str],
    names: dict[str, str],
    key_columns: list[str],
    generation: int | None,
    hash_key: str,
    mark: datetime | None = None,
    before_merge=None,
    replace_invalid_utf8: bool = False,
    replace_versions: bool = False,
) -> LoadResult | None:
    """Read the rows of ``queries`` and merge them into ``raw_stage.<table>`` on its key;
    None (nothing done) when the source or the stage needs a dlt load instead.

    The rows are read into a temporary table first, then merged in one transaction.

    Args:
        generation: marks the rows (incremental tables); None for a full table.
        mark: the cursor value the changes were read from, if any (the result's cursor).
        before_merge: ``f(conn, changes)``, called in the merge's transaction before it,
            with the temporary table of the rows read (``reconcile.py`` compares there).
        replace_invalid_utf8: as ``read_rows``.
        replace_versions: with history, a new version of every key read even where the
            active one has the same row hash (``_merge_scd2``).

    Raises:
        DirectLoadFailed: naming the table; the stage is unchanged.
    """
    loaded = _loaded(table, columns=columns, names=names, generation=generation)
    if not can_merge(
        conn, table, source_url=source_url, columns=columns, names=names, key_columns=key_columns, generation=generation
    ):
        return None
    started = time.perf_counter()
    stage = relation(STAGE_SCHEMA, table.warehouse_name)
    select = ", ".join(quote(c) for c in loaded)
    changes = temp_relation(conn, _CHANGES)
    rows = 0
    committed = False
    try:
        empty_temp_table(conn, _CHANGES, select, stage)
        for chunk in read_rows(
            table,
            source_url=source_url,
            queries=queries,
            names=names,
            maps=load_maps(table, hash_key=hash_key, generation=generation),
            replace_invalid_utf8=replace_invalid_utf8,
        ):
            rows += append_arrow(conn, changes, chunk.select(loaded))
        if rows or before_merge is not None:
            # Nothing read (a quiet hour): nothing to merge, and a merge would still scan
            # the stage on PostgreSQL.
            analyze(conn, changes)
            conn.execute("begin transaction")
            try:
                if before_merge is not None:
                    before_merge(conn, changes)
                _merge(conn, table, stage, changes, select, key_columns, replace_versions)
                conn.execute("commit")
            except BaseException:
                rollback(conn)
                raise
        committed = True
        newest = None
        if table.cursor and rows:
            (newest,) = conn.execute(f"select max({quote(names[table.cursor])}) from {changes}").fetchall()[0]
    except BaseException as exc:
        if not read_failed(exc, source_url):
            raise
        outcome = (
            f"The merge had committed: {STAGE_SCHEMA}.{table.warehouse_name} holds the rows, "
            f"raw.{table.warehouse_name} is unchanged until the next run publishes them."
            if committed
            else f"Nothing was merged: {STAGE_SCHEMA}.{table.warehouse_name} and raw.{table.warehouse_name} "
            "are unchanged."
        )
        # Not a PlatformError: a transient source error in the cause is retried.
        raise DirectLoadFailed(
            f"Table {table.source!r}: reading {what} or merging them into {STAGE_SCHEMA}.{table.warehouse_name} "
            f"failed: {exc}. {outcome}"
        ) from exc
    finally:
        try:
            conn.execute(f"drop table if exists {changes}").fetchall()
        except Exception:  # noqa: S110 (a lost connection took its temporary table along)
            pass
    cursor = max(newest, mark) if newest is not None and mark is not None else (newest or mark)
    return LoadResult(table.warehouse_name, rows, time.perf_counter() - started, BACKEND, cursor)


def read_failed(exc: BaseException, source_url: str) -> bool:
    """Whether ``exc``, raised reading the source or merging, is reported as a failed load
    (DirectLoadFailed): not invalid UTF-8 (the caller has dlt read the table again,
    replacing it) nor Ctrl-C (stop)."""
    error = isinstance(exc, Exception) or type(exc).__name__ == "PanicException"
    return error and not invalid_utf8(exc, source_url)


def _loaded(table: CatalogTable, *, columns: list[str], names: dict[str, str], generation: int | None) -> list[str]:
    return (
        [names[c] for c in columns]
        + (["_dlt_id"] if table.history == "scd2" else [])
        + ([GENERATION_COLUMN] if generation is not None else [])
    )


def can_merge(
    conn,
    table: CatalogTable,
    *,
    source_url: str,
    columns: list[str],
    names: dict[str, str],
    key_columns: list[str],
    generation: int | None,
) -> bool:
    """Whether ``merge_rows`` can merge rows of the table (else it returns None): the
    source is one connectorx reads, and the stage has a key and the columns to merge."""
    staged = [
        c
        for (c,) in conn.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
            [STAGE_SCHEMA, table.warehouse_name],
        ).fetchall()
    ]
    loaded = _loaded(table, columns=columns, names=names, generation=generation)
    return (
        choose_backend(source_url) == "connectorx"
        and bool(key_columns)
        and set(loaded) <= set(staged)
        and (table.history == "scd2") == ("_dlt_valid_to" in staged)
    )


def _merge(
    conn, table: CatalogTable, stage: str, changes: str, select: str, key_columns: list[str], replace: bool = False
) -> None:
    match = " and ".join(f"s.{quote(c)} = c.{quote(c)}" for c in key_columns)
    if table.history == "scd2":
        return _merge_scd2(conn, stage, changes, select, match, replace)
    conn.execute(f"delete from {stage} as s where exists (select 1 from {changes} as c where {match})").fetchall()
    conn.execute(f"insert into {stage} ({select}) select {select} from {changes}").fetchall()


def _merge_scd2(conn, stage: str, changes: str, select: str, match: str, replace: bool = False) -> None:
    """dlt's scd2 with the primary key as merge key (``gen_scd2_sql``): the active version
    of each key read is retired unless its row hash was read again; each row read whose
    hash is not an active version's becomes the active version. One boundary: now, UTC.

    ``replace``: every active version of a key read is retired and every row read becomes
    the active version: a reconciliation's repair, where a staged row may differ from the
    source with the row hash of the source's values (the stage edited by hand)."""
    boundary = datetime.now(UTC)
    same = "" if replace else f"and not exists (select 1 from {changes} as c where c._dlt_id = s._dlt_id)"
    conn.execute(
        f"update {stage} as s set _dlt_valid_to = ? where _dlt_valid_to is null "
        f"and exists (select 1 from {changes} as c where {match}) {same}",
        [boundary],
    ).fetchall()
    active = "false" if replace else "s._dlt_id = c._dlt_id and s._dlt_valid_to is null"
    conn.execute(
        f"insert into {stage} ({select}, _dlt_valid_from, _dlt_valid_to) "
        f"select {select}, ?, null from {changes} as c where not exists (select 1 from {stage} as s where {active})",
        [boundary],
    ).fetchall()
