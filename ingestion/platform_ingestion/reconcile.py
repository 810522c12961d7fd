"""Reconcile a table with its source: compare every row, repair what differs.

A cursor cannot see everything: an update stamped with an old ``updated_at`` (a long
transaction, a clock behind, a manual fix) changes no key and is missed for ever, and a
write the overlap window did not reach leaves the warehouse behind. Reconciliation
closes the gap in three steps:

1. Compare: every source row is read (in ranges of keys read at once, ``_key_ranges``;
   each key as it was at one moment of the read) with the
   maps a load applies to its values (hashed personal data), and lands in a temporary
   table of the warehouse as its key and one hash of its values, each value cast to its
   staged column's type first. Compared with the staged rows' own hashes by primary
   key, it counts the rows missing from the stage, extra in it, and different.
2. Repair: only the rows of the missing and different keys are read again, by key
   (``direct.load_keys``, as a load reads the keys its cursor missed), and merged; in
   the merge's transaction, the staged rows the source no longer has are deleted
   (retired, with history).
3. The table is audited and published through the same path as a load. ``raw`` itself
   is compared with the source too (``_raw_unlike_source``): a row changed there by hand
   or by a bug, which the stage does not show, is counted, and ``raw`` is then published
   whole again.

Why a key and a hash: the rows that differ are few, and landing every row whole to find
them cost more than reading them. Profiled at scale 10 (890,000 rows, 1% differing),
the first version spent 1.1 s reading the source, 0.6 to 1.1 s inserting every row
into the temporary table and 1.0 s comparing and deleting the equal rows from it; at
9 million rows it cost 1.03 of a full load. Landed as a key and a hash (an integer key
and DuckDB's 64-bit hash take 16 bytes a row however wide the table; DuckDB hashes each
Arrow batch as it scans it, while connectorx reads the next), the rows cost about a
tenth of their read, and reading the differing ones again by key a few milliseconds
per 500 keys. The read itself stays: every value must be read to be compared, so it is
most of what a reconcile costs now; on SQLite into DuckDB, datetimes are read as text
and parsed by DuckDB (``_read_as_text``): connectorx's parsing was much of that read
(docs/performance.md, "Reconciling").

Why the warehouse hashes both sides: a staged value is the source's cast to its staged
type (a REAL read from SQLite becomes the declared DECIMAL), so the source's values are
cast to the staged types as an insert casts them (DuckDB: ``cast`` in the select;
PostgreSQL: a ``COPY`` into a temporary table typed like the stage, as before) and
hashed by the function that hashes the staged rows (``warehouse.hash_values``). On
PostgreSQL the rows still travel whole to the server; only the comparison and the
merge shrink there. Hashes of key ranges, as first proposed, would save nothing more:
SQLite has no hash function, so its side of a range hash reads every row anyway.

What the hash gives up: two different rows hash alike with a chance of one in 2**64
each (``warehouse.hash_values``, on either warehouse); such a row would go unrepaired.
What the second read changes: the counts are those of the snapshot, the repair that of a
moment later. A row changed again meanwhile is merged as it is now (what the next load
would do); a missing key deleted meanwhile is not loaded, and the audit expects one row fewer
(as ``engine.converge`` does); a different key deleted meanwhile keeps its staged row
until the next load's key comparison deletes it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from platform_shared import RAW_SCHEMA, CatalogTable, PlatformError, Warehouse, table_metadata
from platform_shared.warehouse import (
    analyze,
    append_arrow,
    column_types,
    empty_temp_table,
    hash_values,
    quote,
    relation,
    temp_relation,
)

from . import audit as wap
from . import direct
from .engine import read_source, table_session
from .loading import (
    GENERATION_COLUMN,
    STAGE_SCHEMA,
    invalid_utf8,
    naming_unreadable_values,
    pii_hasher,
    read_columns,
)

_HASHES = "_platform_source_hashes"
# The ranges of keys a reconcile reads at once (_key_ranges): one per core, at most four.
_CORES = min(os.cpu_count() or 1, 4)
_HASH = "_platform_row_hash"


class NotReconcilable(PlatformError):
    """The table cannot be compared with its source as it stands (load it first)."""


@dataclass
class Differences:
    missing: int = 0  # source rows whose key the stage lacks
    extra: int = 0  # staged rows whose key the source lacks
    different: int = 0  # rows whose key is in both, with another value in some column
    stage_keys: set[tuple] = field(default_factory=set, repr=False)  # the keys of the stage's differences
    raw_keys: set[tuple] = field(default_factory=set, repr=False)  # those of raw's (what readers see)

    @property
    def raw_unlike_source(self) -> int:
        """Rows of raw missing, extra or different against the source."""
        return len(self.raw_keys)

    @property
    def matched(self) -> bool:
        return not (self.missing or self.extra or self.different or self.raw_unlike_source)

    @property
    def raw_altered(self) -> bool:
        """raw differs from the source at other keys than the stage does: edited in the
        warehouse (a repair of the stage's keys alone would not reach those rows)."""
        return self.raw_keys != self.stage_keys


def _match(a: str, b: str, key_columns: list[str]) -> str:
    return " and ".join(f"{a}.{quote(c)} = {b}.{quote(c)}" for c in key_columns)


def _land_hashes(
    conn,
    table: CatalogTable,
    hashes: str,
    *,
    query,
    source_url: str,
    hash_key: str,
    names: dict[str, str],
    key_columns: list[str],
    compared: list[str],
    text: set[str],
    reflected: sa.Table,
) -> int:
    """Read every source row (in key ranges read at once, ``_key_ranges``) into
    ``hashes`` as its key and the hash of its compared values; returns the rows read.
    The source columns in ``text`` are read as text (``_read_as_text``)."""
    stage = relation(STAGE_SCHEMA, table.warehouse_name)
    keys = ", ".join(quote(c) for c in key_columns)
    empty_temp_table(conn, _HASHES, f"{keys}, {hash_values(conn, [quote(c) for c in compared])} as {_HASH}", stage)
    types = column_types(conn, STAGE_SCHEMA, table.warehouse_name)
    cast = {c: f"cast({quote(c)} as {types[c]})" for c in [*key_columns, *compared]}
    for c in (names.get(c, c) for c in text):
        cast[c] = f"cast(nullif({quote(c)}, '') as {types[c]})"
    query = query.with_only_columns(
        *(sa.func.ifnull(c, "").label(c.name) if c.name in text else c for c in query.selected_columns)
    )
    select = ", ".join([*(cast[c] for c in key_columns), hash_values(conn, [cast[c] for c in compared])])
    maps = [pii_hasher(table.columns.hash, hash_key)] if table.columns.hash else []
    rows = 0
    try:
        ranges = _key_ranges(query, table, reflected, source_url)
        for chunk in direct.read_rows(
            table, source_url=source_url, queries=ranges, maps=maps, names=names, at_once=True
        ):
            rows += append_arrow(conn, hashes, chunk, select=select, like=stage)
    except BaseException as exc:
        if invalid_utf8(exc, source_url):
            raise NotReconcilable(
                f"Table {table.source!r}: a text column holds invalid UTF-8, which the comparison's reader "
                "(connectorx) cannot read; a load replaces it (U+FFFD), a comparison cannot tell it from the "
                "source. Nothing was changed. Fix the text in the source, then reconcile."
            ) from exc
        if not direct.read_failed(exc, source_url):
            raise
        raise direct.DirectLoadFailed(
            f"Table {table.source!r}: reading every row to compare it failed: {exc}. Nothing was changed: "
            f"{STAGE_SCHEMA}.{table.warehouse_name} and raw.{table.warehouse_name} are as they were."
        ) from exc
    analyze(conn, hashes)
    return rows


def _raw_unlike_source(
    conn, table: CatalogTable, hashes: str, key_columns: list[str], compared: list[str], stage_keys: set[tuple]
) -> set[tuple]:
    """The keys of the rows of ``raw`` missing, extra or different against the source's
    key-and-hash table (``hashes``): raw's columns are the staged ones, hashed alike.

    Without a join when it can: raw is normally the stage's current rows as published,
    and then differs from the source exactly where the stage does (``stage_keys``). So
    the count and the sum of the row hashes of raw and of the staged rows first (one scan
    of each); the join with the source's hashes only when they differ (raw changed in
    the warehouse; a join of every row cost 3.1 s of a 26 s reconcile of web_sessions at
    scale 100 on PostgreSQL)."""
    keys = ", ".join(quote(c) for c in key_columns)
    known = " and ".join(f"{quote(c)} is not null" for c in key_columns)  # a null key never reaches raw
    digest = hash_values(conn, [quote(c) for c in compared])
    raw = f"(select {keys}, {digest} as {_HASH} from {relation(RAW_SCHEMA, table.warehouse_name)})"
    source = f"(select {keys}, {_HASH} from {hashes} where {known})"
    # A stage equal to the source: the source's hashes, already computed, stand for it.
    staged = source if not stage_keys else f"({wap.current_stage(table, f'{keys}, {digest} as {_HASH}', known)})"
    sides = [conn.execute(f"select count(*), sum({_HASH}) from {side} as t").fetchall()[0] for side in (staged, raw)]
    if sides[0] == sides[1]:
        return set(stage_keys)
    unlike = conn.execute(
        f"select {', '.join(f'coalesce(r.{quote(c)}, s.{quote(c)})' for c in key_columns)} "
        f"from {raw} as r full join {source} as s on {_match('r', 's', key_columns)} "
        f"where r.{_HASH} is null or s.{_HASH} is null or r.{_HASH} <> s.{_HASH}"
    ).fetchall()
    return {tuple(key) for key in unlike}


def _partition_column(table: CatalogTable, reflected: sa.Table) -> str | None:
    """The source column a read of every row may be split by: a single integer key,
    declared NOT NULL (a range of keys misses a null key, which the comparison counts)."""
    if len(table.primary_key) != 1:
        return None
    column = reflected.c[table.primary_key[0]]
    return column.name if isinstance(column.type, sa.Integer) and not column.nullable else None


def _key_ranges(query, table: CatalogTable, reflected: sa.Table, source_url: str) -> list:
    """``query`` split into one range of keys per core (at most four), of as many rows
    each (the boundaries read through the key's index), to read at once.

    Why: reading every source row was most of a reconcile, and two ranges at once read
    web_sessions at scale 100 in 2.0 s against 3.3 s on these 2 cores (connectorx from
    SQLite; a reconcile of every table 0.46 of a full load against 0.52). connectorx's
    own partitioning splits the range between the smallest and the largest key evenly,
    which a key with gaps defeats (keys 1 to 4 million and a few near 8 million: one
    range held every row), and finds them by a scan.

    Each range is its own snapshot of the source. The comparison and the repair go key
    by key, so each key is still compared as it was at one moment of the read, as in one
    snapshot, and the ranges cover every key (the first and the last are open)."""
    name = _partition_column(table, reflected)
    if name is None or _CORES < 2:
        return [query]
    key = reflected.c[name]
    engine = sa.create_engine(source_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(sa.func.count()).select_from(reflected)).scalar_one()
            bounds = [
                conn.execute(sa.select(key).order_by(key).offset(rows * i // _CORES).limit(1)).scalar()
                for i in range(1, _CORES)
            ]
    finally:
        engine.dispose()
    bounds = sorted({b for b in bounds if b is not None})
    if not bounds:
        return [query]
    edges = [None, *bounds, None]
    return [
        query.where(*([key >= low] if low is not None else []), *([key < high] if high is not None else []))
        for low, high in zip(edges, edges[1:], strict=False)
    ]


def _read_as_text(table: CatalogTable, query, *, source_url: str, warehouse: Warehouse) -> set[str]:
    """The source columns to read as their text: on SQLite into DuckDB, the datetime
    columns (``ifnull(c, '')``: connectorx types an expression by its first value, and a
    NULL has none), which DuckDB casts to the staged type as it hashes them.

    Why: connectorx parses SQLite's datetime text slowly; it was most of the read (`make
    bench SCALES=100`: reconcile 0.69 of a full load before, 0.48 after;
    docs/performance.md). DuckDB parses every text connectorx accepts to the same value
    (tests/test_reconcile: ``test_datetime_text_hashes_as_the_load_stages_it``). An empty
    text, which connectorx refuses (so no load stages it), compares as a NULL."""
    if not warehouse.is_duckdb or make_url(source_url).get_backend_name() != "sqlite":
        return set()
    return {
        c.name for c in query.selected_columns if isinstance(c.type, sa.DateTime) and c.name not in table.columns.hash
    }


def _compare(
    conn, table: CatalogTable, hashes: str, *, key_columns: list[str], compared: list[str], found: Differences
) -> tuple[list[tuple], set[tuple], int]:
    """Count the missing, extra and different rows into ``found`` (one join: a hash is
    never null, so a null one is a side without the key); returns the keys to read
    again, those of them the stage lacks, and the source rows with a null key (which no
    key reads)."""
    keys = ", ".join(quote(c) for c in key_columns)
    # Hashed before the join: the join carries a key and a hash, not the staged rows.
    staged = wap.current_stage(table, f"{keys}, {hash_values(conn, [quote(c) for c in compared])} as {_HASH}")
    rows = conn.execute(
        f"select {', '.join(f'coalesce(c.{quote(c)}, s.{quote(c)})' for c in key_columns)}, "
        f"s.{_HASH} is null, c.{_HASH} is null "
        f"from {hashes} as c full join ({staged}) as s on {_match('s', 'c', key_columns)} "
        f"where s.{_HASH} is null or c.{_HASH} is null or c.{_HASH} <> s.{_HASH}"
    ).fetchall()
    found.stage_keys = {tuple(key) for *key, _, _ in rows if None not in key}
    found.missing = sum(1 for *_, missing, _ in rows if missing)
    found.extra = sum(1 for *_, extra in rows if extra)
    found.different = len(rows) - found.missing - found.extra
    source = [(tuple(key), missing) for *key, missing, extra in rows if not extra]
    keys = list(dict.fromkeys(k for k, _ in source if None not in k))
    return keys, {k for k, missing in source if missing and None not in k}, sum(1 for k, _ in source if None in k)


def _retire_extra(
    table: CatalogTable,
    hashes: str,
    key_columns: list[str],
    generation: int | None,
    found: Differences,
    missing: set[tuple],
    unread: list[int],
):
    """The ``before_merge`` of the repair: count the ``missing`` keys that the second read
    did not find (deleted meanwhile) into ``unread``, then delete (or retire) the staged
    rows whose key the source lacks, if any."""
    stage = relation(STAGE_SCHEMA, table.warehouse_name)
    keys = ", ".join(quote(c) for c in key_columns)

    def run(conn, changes: str) -> None:
        read = {tuple(k) for k in conn.execute(f"select {keys} from {changes}").fetchall()}
        unread.append(len(missing - read))
        if not found.extra:
            return
        gone = f"not exists (select 1 from {hashes} as c where {_match('s', 'c', key_columns)})"
        if table.history == "scd2":
            mark = f", {quote(GENERATION_COLUMN)} = {int(generation)}" if generation is not None else ""
            conn.execute(
                f"update {stage} as s set _dlt_valid_to = ?{mark} where s._dlt_valid_to is null and {gone}",
                [datetime.now(UTC)],
            ).fetchall()
        else:
            conn.execute(f"delete from {stage} as s where {gone}").fetchall()

    return run


def _compare_and_repair(
    conn,
    table: CatalogTable,
    *,
    reflected: sa.Table,
    columns: list[str],
    names: dict[str, str],
    key_columns: list[str],
    generation: int | None,
    source_url: str,
    hash_key: str,
    warehouse: Warehouse,
) -> tuple[Differences, int, int, int]:
    """Steps 1 and 2: returns what differed, the source rows compared, the rows the stage
    holds now (the snapshot's, less keys deleted before the second read and null keys),
    and the source rows with a null key."""
    merge = {"names": names, "key_columns": key_columns, "generation": generation}
    if not direct.can_merge(conn, table, source_url=source_url, columns=columns, **merge):
        raise NotReconcilable(
            f"Table {table.source!r}: its source or its staged columns cannot be read "
            "directly (a source connectorx does not read); reconcile with a full refresh."
        )
    found, unread = Differences(), []
    compared = [names[c] for c in columns]
    hashes = temp_relation(conn, _HASHES)
    try:
        query = sa.select(*read_columns(reflected, columns, source_url))
        rows = _land_hashes(
            conn,
            table,
            hashes,
            query=query,
            text=_read_as_text(table, query, source_url=source_url, warehouse=warehouse),
            reflected=reflected,
            source_url=source_url,
            hash_key=hash_key,
            names=names,
            key_columns=key_columns,
            compared=compared,
        )
        keys, missing, null_keys = _compare(
            conn, table, hashes, key_columns=key_columns, compared=compared, found=found
        )
        found.raw_keys = _raw_unlike_source(conn, table, hashes, key_columns, compared, found.stage_keys)
        direct.load_keys(
            conn,
            table,
            keys=keys,
            reflected=reflected,
            columns=columns,
            source_url=source_url,
            why="that differ from the source",
            hash_key=hash_key,
            **merge,
            before_merge=_retire_extra(table, hashes, key_columns, generation, found, missing, unread),
            replace_versions=True,  # a staged row edited in place keeps the source's row hash
        )
    finally:
        try:
            conn.execute(f"drop table if exists {hashes}").fetchall()
        except Exception:  # noqa: S110 (a lost connection took its temporary table along)
            pass
    return found, rows, rows - null_keys - unread[0], null_keys


def reconcile_table(
    table: CatalogTable,
    *,
    warehouse: Warehouse,
    source_url: str,
    hash_key: str,
) -> tuple[Differences, dict]:
    """Compare every row of a published table with its source and repair the stage and
    ``raw`` (history included); returns what differed before the repair, and metadata.

    Raises:
        NotReconcilable: the table was never published, or its columns changed since
            (a normal load takes the change first; ``make ingest``).
        AuditFailed: the repaired stage failed its audit; ``raw`` keeps its last good copy.
    """
    if table.columns.hash and not hash_key:
        raise NotReconcilable(
            f"Table {table.source!r} hashes {list(table.columns.hash)} but the hash key is empty: "
            "every hashed value would differ. Set PII_HASH_KEY, or leave it unset for the local key."
        )
    reflected, columns, names, key_columns = read_source(table, source_url)
    if not key_columns:
        raise NotReconcilable(
            f"Table {table.source!r} has no primary_key in the catalog: its rows cannot be "
            "matched with the source's. It is replaced whole by every load anyway."
        )
    with table_session(warehouse, table) as conn:
        drift = wap.detect_drift(conn, table, columns)
        published = wap.published_generation(conn, table) if table.load == "incremental" else None
        staged = wap.published_cursor(conn, table) is not None or table.load != "incremental"
        if drift.changed or not wap.stage_exists(conn, table) or not staged:
            raise NotReconcilable(
                f"Table {table.source!r} is not loaded as its source stands (never published, or columns "
                f"changed: {drift.as_metadata()}): run its load first (make ingest), then reconcile."
            )
        generation = (published or 0) + 1 if table.load == "incremental" else None
        started = time.perf_counter()
        with naming_unreadable_values(table, reflected, source_url):
            found, rows, expected, null_keys = _compare_and_repair(
                conn,
                table,
                reflected=reflected,
                columns=list(columns),
                names=names,
                key_columns=key_columns,
                generation=generation,
                source_url=source_url,
                hash_key=hash_key,
                warehouse=warehouse,
            )
        seconds = time.perf_counter() - started
        # raw altered in the warehouse: published whole again, from the repaired stage.
        since = wap.publish_since(conn, table, published, whole=found.raw_altered)
        wap.audit(conn, table, source_rows=expected, key_columns=key_columns, since=since, source_null_keys=null_keys)
        wap.publish(
            conn,
            table,
            columns,
            key_columns=key_columns,
            since=since,
            generation=generation,
            started_at=wap.published_started_at(conn, table),
        )
        tags = {names[c]: {"pii": "hashed"} for c in table.columns.hash}
        meta = table_metadata(conn, RAW_SCHEMA, table.warehouse_name, tags)
    return found, {
        **meta,
        "rows_compared": rows,
        "rows_missing": found.missing,
        "rows_extra": found.extra,
        "rows_different": found.different,
        "raw_rows_unlike_source": found.raw_unlike_source,
        "duration_s": round(seconds, 3),
    }
