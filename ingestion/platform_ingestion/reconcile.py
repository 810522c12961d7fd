"""Reconcile a table with its source: compare every row, repair what differs.

A cursor cannot see everything: an update stamped with an old ``updated_at`` (a long
transaction, a clock behind, a manual fix) changes no key and is missed for ever, and a
write the overlap window did not reach leaves the warehouse behind. Reconciliation
closes the gap: every source row is read (one query, so one snapshot of the source) with
the same maps as a load, landed in a temporary table of the warehouse, and compared
there with the staged rows by primary key and every column. Rows missing from the stage
and rows that differ are merged, rows the source no longer has are deleted (retired,
with history), and the table is audited and published through the same path as a load.

The comparison happens in the warehouse, row by row on the key, rather than by hashes
of key ranges computed on both sides: SQLite has no hash function, so the source's side
of a range hash needs every row read anyway, and once the rows are in the warehouse one
hash join on the key compares them as fast as a hash per range would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from platform_shared import RAW_SCHEMA, CatalogTable, PlatformError, Warehouse, table_metadata
from platform_shared.warehouse import quote, relation

from . import audit as wap
from . import direct
from .engine import one_load_per_table
from .loading import (
    GENERATION_COLUMN,
    STAGE_SCHEMA,
    check_source_values,
    configure_duckdb,
    read_columns,
    reflect_source,
    source_columns,
    warehouse_column_names,
)


class NotReconcilable(PlatformError):
    """The table cannot be compared with its source as it stands (load it first)."""


@dataclass
class Differences:
    missing: int = 0  # source rows whose key the stage lacks
    extra: int = 0  # staged rows whose key the source lacks
    different: int = 0  # rows whose key is in both, with another value in some column

    @property
    def matched(self) -> bool:
        return not (self.missing or self.extra or self.different)


def _compare_and_trim(table: CatalogTable, key_columns: list[str], compared: list[str], generation: int | None,
                      found: Differences):
    """The ``before_merge`` of ``direct.merge_rows``: count the differences, delete (or
    retire) the staged rows the source lacks, and keep only the rows to merge."""
    stage = relation(STAGE_SCHEMA, table.warehouse_name)
    current = " and s._dlt_valid_to is null" if table.history == "scd2" else ""
    match = " and ".join(f"s.{quote(c)} = c.{quote(c)}" for c in key_columns)
    same = " and ".join(f"s.{quote(c)} is not distinct from c.{quote(c)}" for c in compared)

    def run(conn, changes: str) -> None:
        count = lambda sql: conn.execute(sql).fetchall()[0][0]  # noqa: E731
        found.missing = count(f"select count(*) from {changes} as c where not exists "
                              f"(select 1 from {stage} as s where {match}{current})")
        found.different = count(f"select count(*) from {changes} as c join {stage} as s on {match}{current} "
                                f"where not ({same})")
        gone = f"not exists (select 1 from {changes} as c where {match})"
        if table.history == "scd2":
            mark = f", {quote(GENERATION_COLUMN)} = {int(generation)}" if generation is not None else ""
            (found.extra,) = conn.execute(
                f"update {stage} as s set _dlt_valid_to = ?{mark} where s._dlt_valid_to is null and {gone}",
                [datetime.now(timezone.utc)]).fetchall()[0]
        else:
            (found.extra,) = conn.execute(f"delete from {stage} as s where {gone}").fetchall()[0]
        conn.execute(f"delete from {changes} as c where exists "
                     f"(select 1 from {stage} as s where {match}{current} and {same})").fetchall()

    return run


def reconcile_table(
    table: CatalogTable, *, warehouse: Warehouse, source_url: str, hash_key: str,
) -> tuple[Differences, dict]:
    """Compare every row of a published table with its source and repair the stage and
    ``raw`` (history included); returns what differed before the repair, and metadata.

    Raises:
        NotReconcilable: the table was never published, or its columns changed since
            (a normal load takes the change first; ``make ingest``).
        AuditFailed: the repaired stage failed its audit; ``raw`` keeps its last good copy.
    """
    if table.columns.hash and not hash_key:
        raise NotReconcilable(f"Table {table.source!r} hashes {list(table.columns.hash)} but the hash key is empty: "
                              "every hashed value would differ. Set PII_HASH_KEY, or leave it unset for the local key.")
    reflected = reflect_source(source_url, table)
    columns = source_columns(reflected, table)
    check_source_values(table, reflected, source_url)
    names = warehouse_column_names([*columns, *table.primary_key])
    key_columns = [names[c] for c in table.primary_key]
    if not key_columns:
        raise NotReconcilable(f"Table {table.source!r} has no primary_key in the catalog: its rows cannot be "
                              "matched with the source's. It is replaced whole by every load anyway.")
    with warehouse.connect() as conn, one_load_per_table(conn, table):
        if warehouse.is_duckdb:
            configure_duckdb(conn)
        drift = wap.detect_drift(conn, table, columns)
        published = wap.published_generation(conn, table) if table.load == "incremental" else None
        staged = wap.published_cursor(conn, table) is not None or table.load != "incremental"
        if drift.changed or not wap.stage_exists(conn, table) or not staged:
            raise NotReconcilable(
                f"Table {table.source!r} is not loaded as its source stands (never published, or columns "
                f"changed: {drift.as_metadata()}): run its load first (make ingest), then reconcile.")
        generation = (published or 0) + 1 if table.load == "incremental" else None
        found = Differences()
        query = sa.select(*read_columns(reflected, list(columns), source_url))
        result = direct.merge_rows(
            conn, table, queries=[query], what="every row", source_url=source_url, columns=list(columns),
            names=names, key_columns=key_columns, generation=generation, hash_key=hash_key,
            before_merge=_compare_and_trim(table, key_columns, [names[c] for c in columns], generation, found),
        )
        if result is None:
            raise NotReconcilable(f"Table {table.source!r}: its source or its staged columns cannot be read "
                                  "directly (a source connectorx does not read); reconcile with a full refresh.")
        since = published if published is not None and wap.has_generation(conn, table) else None
        # The rows read are the source in one snapshot (one query): the stage must now hold as many.
        wap.audit(conn, table, source_rows=result.rows_loaded, key_columns=key_columns, since=since)
        wap.publish(conn, table, columns, key_columns=key_columns, since=since, generation=generation,
                    started_at=wap.published_started_at(conn, table))
        tags = {names[c]: {"pii": "hashed"} for c in table.columns.hash}
        meta = table_metadata(conn, RAW_SCHEMA, table.warehouse_name, tags)
    return found, {
        **meta,
        "rows_compared": result.rows_loaded,
        "rows_missing": found.missing,
        "rows_extra": found.extra,
        "rows_different": found.different,
        "duration_s": round(result.seconds, 3),
    }
