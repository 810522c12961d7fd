"""Write, audit, publish: what dlt lacks, done in the warehouse in one transaction.

dlt lands each table in ``raw_stage``. Here the staged rows are reconciled with the
source (hard deletes), audited (row count, primary key, schema) and only then copied
to ``raw`` in one transaction, so readers never see a partial or unaudited table. A
failed audit leaves the last good copy in ``raw`` and the bad load in ``raw_stage``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
from platform_shared import HISTORY_SUFFIX, RAW_SCHEMA, CatalogTable, PlatformError

from .loading import STAGE_SCHEMA

# The source schema each table was last published with, for drift detection.
SNAPSHOT_TABLE = f"{STAGE_SCHEMA}._platform_source_columns"
_DLT_SCD2 = ("_dlt_valid_from", "_dlt_valid_to")


class AuditFailed(PlatformError):
    """The staged load broke one of the table's audits; nothing was published."""


class SchemaDrift(PlatformError):
    """A source column was dropped or changed type, against the table's policy."""


@dataclass
class Drift:
    added: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, str]:
        return {
            "columns_added": ", ".join(self.added) or "-",
            "columns_dropped": ", ".join(self.dropped) or "-",
            "columns_retyped": ", ".join(f"{c} {a} -> {b}" for c, (a, b) in self.retyped.items()) or "-",
        }


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _rel(schema: str, table: str) -> str:
    return f"{_quote(schema)}.{_quote(table)}"


def _ensure_snapshot(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(f"create schema if not exists {_quote(STAGE_SCHEMA)}")
    conn.execute(
        f"create table if not exists {SNAPSHOT_TABLE} "
        "(table_name varchar, column_name varchar, data_type varchar)"
    )


def detect_drift(conn: duckdb.DuckDBPyConnection, table: CatalogTable, columns: dict[str, str]) -> Drift:
    """Compare the source's columns now with those of the last published load."""
    _ensure_snapshot(conn)
    before = dict(conn.execute(
        f"select column_name, data_type from {SNAPSHOT_TABLE} where table_name = ?",
        [table.warehouse_name],
    ).fetchall())
    if not before:
        return Drift()
    return Drift(
        added=[c for c in columns if c not in before],
        dropped=[c for c in before if c not in columns],
        retyped={c: (before[c], t) for c, t in columns.items() if c in before and before[c] != t},
    )


def check_drift(table: CatalogTable, drift: Drift, *, full_refresh: bool) -> None:
    """Fail, before any data moves, on a change the table's policy does not accept."""
    problems = []
    if drift.dropped and table.on_column_dropped == "fail":
        problems.append(f"column(s) {drift.dropped} were dropped or renamed in the source")
    if drift.retyped:
        problems.append("column(s) changed type: " + ", ".join(
            f"{c} {a} -> {b}" for c, (a, b) in drift.retyped.items()))
    if problems and not full_refresh:
        raise SchemaDrift(
            f"Source table {table.source!r}: {'; '.join(problems)}. The warehouse keeps the last "
            "good copy. Update the consumers, then run the asset with full_refresh: true, or set "
            "on_column_dropped: ignore for this table in the catalog."
        )


def reconcile_deletes(conn: duckdb.DuckDBPyConnection, table: CatalogTable, keys: pa.Table) -> int:
    """Delete staged rows whose key is gone from the source; returns how many.

    A cursor never sees a hard delete, but comparing keys (one narrow column) does.
    """
    stage = _rel(STAGE_SCHEMA, table.warehouse_name)
    conn.register("source_keys", keys)
    try:
        match = " and ".join(f"k.{_quote(c)} = s.{_quote(c)}" for c in keys.column_names)
        (deleted,) = conn.execute(
            f"delete from {stage} as s where not exists (select 1 from source_keys as k where {match})"
        ).fetchall()[0]
    finally:
        conn.unregister("source_keys")
    return deleted


def _current(table: CatalogTable) -> str:
    """The staged rows that are the table's current state (scd2 keeps retired versions)."""
    where = " where _dlt_valid_to is null" if table.history == "scd2" else ""
    return f"select * from {_rel(STAGE_SCHEMA, table.warehouse_name)}{where}"


def audit(
    conn: duckdb.DuckDBPyConnection, table: CatalogTable, *, source_rows: int, key_columns: list[str]
) -> int:
    """Audit the staged table; returns its row count.

    Raises:
        AuditFailed: naming the table and every audit that failed.
    """
    current = _current(table)
    (rows,) = conn.execute(f"select count(*) from ({current})").fetchall()[0]
    failures = []
    if rows != source_rows:
        failures.append(f"row count {rows} in the staged load, {source_rows} in the source")
    if key_columns:
        keys = ", ".join(_quote(c) for c in key_columns)
        nulls = " or ".join(f"{_quote(c)} is null" for c in key_columns)
        (null_keys,) = conn.execute(f"select count(*) from ({current}) where {nulls}").fetchall()[0]
        (dupes,) = conn.execute(
            f"select count(*) from (select {keys} from ({current}) group by all having count(*) > 1)"
        ).fetchall()[0]
        if null_keys:
            failures.append(f"{null_keys} row(s) with a null primary key ({keys})")
        if dupes:
            failures.append(f"{dupes} primary key value(s) ({keys}) on more than one row")
    if failures:
        raise AuditFailed(
            f"Table {table.source!r} failed its audit: {'; '.join(failures)}. Nothing was "
            f"published: {RAW_SCHEMA}.{table.warehouse_name} keeps the last good copy and the "
            f"bad load is kept in {STAGE_SCHEMA}.{table.warehouse_name} for inspection."
        )
    return rows


def publish(conn: duckdb.DuckDBPyConnection, table: CatalogTable, columns: dict[str, str]) -> None:
    """Swap the audited copy into ``raw`` and record its source schema, atomically."""
    stage = _rel(STAGE_SCHEMA, table.warehouse_name)
    names = [c for (c,) in conn.execute(
        "select column_name from information_schema.columns where table_schema = ? "
        "and table_name = ? order by ordinal_position", [STAGE_SCHEMA, table.warehouse_name],
    ).fetchall() if not c.startswith("_dlt_")]
    select = ", ".join(_quote(c) for c in names)
    conn.execute("begin transaction")
    try:
        conn.execute(f"create schema if not exists {_quote(RAW_SCHEMA)}")
        conn.execute(
            f"create or replace table {_rel(RAW_SCHEMA, table.warehouse_name)} as "
            f"select {select} from ({_current(table)})"
        )
        if table.history == "scd2":
            conn.execute(
                f"create or replace table {_rel(RAW_SCHEMA, table.warehouse_name + HISTORY_SUFFIX)} as "
                f"select {select}, _dlt_valid_from as valid_from, _dlt_valid_to as valid_to from {stage}"
            )
        conn.execute(f"delete from {SNAPSHOT_TABLE} where table_name = ?", [table.warehouse_name])
        conn.executemany(
            f"insert into {SNAPSHOT_TABLE} values (?, ?, ?)",
            [(table.warehouse_name, c, t) for c, t in columns.items()],
        )
        conn.execute("commit")
    except Exception:
        conn.execute("rollback")
        raise
