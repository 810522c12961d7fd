"""Write, audit, publish: what dlt lacks, done in the warehouse in one transaction.

dlt lands each table in ``raw_stage``. Here the staged rows are reconciled with the
source (hard deletes), audited (row count, primary key, schema) and only then copied
to ``raw`` in one transaction, so readers never see a partial or unaudited table. A
failed audit leaves the last good copy in ``raw`` and the bad load in ``raw_stage``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from platform_shared import HISTORY_SUFFIX, RAW_SCHEMA, CatalogTable, PlatformError, replace_table
from platform_shared.warehouse import analyze, append_arrow, empty_temp_table, quote, relation, rollback

from .loading import GENERATION_COLUMN, STAGE_SCHEMA
from .snapshot import KEY_SUM_MODULUS

# The source schema each table was last published with, for drift detection.
SNAPSHOT_TABLE = f"{STAGE_SCHEMA}._platform_source_columns"
# The generation (loading.GENERATION_COLUMN) of the staged rows each incremental table
# was last published up to: raw holds exactly the staged rows of that generation or older.
PUBLISHED_TABLE = f"{STAGE_SCHEMA}._platform_published"
# The cursor column and history mode each incremental table was last published with: a
# run resumes from the staged rows' largest cursor only when the catalog still says so.
CURSORS_TABLE = f"{STAGE_SCHEMA}._platform_cursors"
_SOURCE_KEYS = "_platform_source_keys"
# The validity columns of raw.<table>_history, from those of dlt's scd2 stage.
_VALIDITY = ("valid_from", "valid_to")
_VALIDITY_SELECT = "_dlt_valid_from as valid_from, _dlt_valid_to as valid_to"


class AuditFailed(PlatformError):
    """The staged load broke one of the table's audits; nothing was published."""


class SchemaDrift(PlatformError):
    """A source column was dropped or changed type, against the table's policy."""


@dataclass
class Drift:
    added: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.dropped or self.retyped)

    def as_metadata(self) -> dict[str, str]:
        return {
            "columns_added": ", ".join(self.added) or "-",
            "columns_dropped": ", ".join(self.dropped) or "-",
            "columns_retyped": ", ".join(f"{c} {a} -> {b}" for c, (a, b) in self.retyped.items()) or "-",
        }


def _ensure_snapshot(conn) -> None:
    conn.execute(f"create schema if not exists {quote(STAGE_SCHEMA)}")
    conn.execute(
        f"create table if not exists {SNAPSHOT_TABLE} (table_name varchar, column_name varchar, data_type varchar)"
    )
    conn.execute(f"create table if not exists {PUBLISHED_TABLE} (table_name varchar, generation bigint)")
    conn.execute(
        f"create table if not exists {CURSORS_TABLE} (table_name varchar, cursor_column varchar, history varchar)"
    )
    # When the run that last published the table started (UTC, ISO 8601): the next run's
    # mark never passes it, whatever future cursor values the source holds.
    conn.execute(f"alter table {CURSORS_TABLE} add column if not exists started_at varchar")


def published_generation(conn, table: CatalogTable) -> int | None:
    """The generation up to which the table's staged rows are published (None: unknown)."""
    _ensure_snapshot(conn)
    row = conn.execute(
        f"select max(generation) from {PUBLISHED_TABLE} where table_name = ?", [table.warehouse_name]
    ).fetchall()[0]
    return row[0]


def published_cursor(conn, table: CatalogTable) -> tuple[str, str] | None:
    """The cursor column and history mode the table was last published with (None: unknown)."""
    rows = conn.execute(
        f"select cursor_column, history from {CURSORS_TABLE} where table_name = ?", [table.warehouse_name]
    ).fetchall()
    return tuple(rows[0]) if rows else None


def published_started_at(conn, table: CatalogTable) -> datetime | None:
    """When the run that last published the table started (UTC), if recorded."""
    rows = conn.execute(
        f"select started_at from {CURSORS_TABLE} where table_name = ?", [table.warehouse_name]
    ).fetchall()
    return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None


def detect_drift(conn, table: CatalogTable, columns: dict[str, str]) -> Drift:
    """Compare the source's columns now with those of the last published load."""
    _ensure_snapshot(conn)
    before = dict(
        conn.execute(
            f"select column_name, data_type from {SNAPSHOT_TABLE} where table_name = ?",
            [table.warehouse_name],
        ).fetchall()
    )
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
        # A rename reflects as a drop beside an added column: name the candidates.
        added = f" (new in the source: {drift.added})" if drift.added else ""
        problems.append(f"column(s) {drift.dropped} were dropped or renamed in the source{added}")
    if drift.retyped:
        problems.append(
            "column(s) changed type: " + ", ".join(f"{c} {a} -> {b}" for c, (a, b) in drift.retyped.items())
        )
    if problems and not full_refresh:
        raise SchemaDrift(
            f"Source table {table.source!r}: {'; '.join(problems)}. The warehouse keeps the last "
            "good copy. Update the consumers, then run the asset with full_refresh: true, or set "
            "on_column_dropped: ignore for this table in the catalog."
        )


@dataclass
class KeyComparison:
    """The staged keys against the source's, read in one snapshot."""

    source_rows: int
    # Staged rows whose key is gone from the source: deleted (retired, with history).
    deleted: int
    # Source keys the stage lacks (committed after the extract read, or missed by the
    # cursor): the caller loads their rows.
    missing: list[tuple]


def compare_keys(conn, table: CatalogTable, keys: pa.RecordBatchReader, generation: int | None = None) -> KeyComparison:
    """Delete staged rows whose key is gone from the source (retire them, for a table with
    history) and list the source keys the stage lacks.

    A cursor never sees a hard delete, but comparing keys (one narrow column) does. The
    source keys stream into a temporary table (typed as the staged keys), which DuckDB
    spills to disk past its memory limit.
    """
    stage = relation(STAGE_SCHEMA, table.warehouse_name)
    columns = keys.schema.names
    source_keys = empty_temp_table(conn, _SOURCE_KEYS, ", ".join(quote(c) for c in columns), stage)
    try:
        source_rows = append_arrow(conn, source_keys, keys)
        analyze(conn, source_keys)
        match = " and ".join(f"k.{quote(c)} = s.{quote(c)}" for c in columns)
        gone = f"not exists (select 1 from {source_keys} as k where {match})"
        if table.history == "scd2":
            # History keeps the deleted row: its current version is retired, as dlt's scd2
            # retires a row that a full extract lacks, and marked with this run's
            # generation, so that publish copies the key's history again.
            mark = (
                f", {quote(GENERATION_COLUMN)} = {int(generation)}"
                if generation is not None and has_generation(conn, table)
                else ""
            )
            (deleted,) = conn.execute(
                f"update {stage} as s set _dlt_valid_to = now(){mark} where _dlt_valid_to is null and {gone}"
            ).fetchall()[0]
        else:
            (deleted,) = conn.execute(f"delete from {stage} as s where {gone}").fetchall()[0]
        missing = conn.execute(
            f"select {', '.join(f'k.{quote(c)}' for c in columns)} from {source_keys} as k "
            f"where not exists (select 1 from ({current_stage(table)}) as s where {match})"
        ).fetchall()
    finally:
        conn.execute(f"drop table if exists {source_keys}").fetchall()
    return KeyComparison(source_rows, deleted, [tuple(k) for k in missing])


def same_keys_as_source(conn, table: CatalogTable, key_columns: list[str], summary: tuple) -> bool:
    """Whether the current staged rows (not retired, for a table with history) have the
    source's row count and the same smallest and largest first key column
    (``snapshot.key_summary``).

    After an incremental load the stage holds every key of the source: the cursor sees
    every insert and update (its overlap window catches late commits), and each load
    merges what it read. Any further staged row is one deleted from the source since.
    So when the counts are equal, nothing was deleted, and the key comparison of
    ``compare_keys`` (most of the cost of re-ingesting a large table with few
    changes) has nothing to find. Should a row escape a cursor that is not kept up (a
    new key inserted with an old cursor value), the smallest or largest key differs,
    or the count does and the audit fails on it. A row missed among the existing keys
    that a hard delete offsets exactly: the sum of the integer keys (``key_summary``)
    differs then; for other key types, the daily reconciliation finds it.
    """
    key = quote(key_columns[0])
    count, low, high, total = summary
    modulo = f"coalesce(sum({key} % {KEY_SUM_MODULUS}), 0)" if total is not None else "null"
    staged = conn.execute(
        f"select count(*), min({key}), max({key}), {modulo} from ({current_stage(table)}) as c"
    ).fetchall()[0]
    return tuple(staged) == (count, low, high, total)


def current_stage(table: CatalogTable, columns: str = "*", where: str = "") -> str:
    """A select of ``columns`` over the staged rows that are the table's current state
    (scd2 keeps retired versions), those matching ``where`` if given."""
    conditions = [*(["_dlt_valid_to is null"] if table.history == "scd2" else []), *([where] if where else [])]
    return f"select {columns} from {relation(STAGE_SCHEMA, table.warehouse_name)}" + (
        f" where {' and '.join(conditions)}" if conditions else ""
    )


def stage_exists(conn, table: CatalogTable) -> bool:
    return bool(_columns(conn, STAGE_SCHEMA, table.warehouse_name))


def has_generation(conn, table: CatalogTable) -> bool:
    """Whether the staged rows carry their generation (an empty extract adds no column)."""
    return any(c == GENERATION_COLUMN for c, _ in _columns(conn, STAGE_SCHEMA, table.warehouse_name))


def publish_since(conn, table: CatalogTable, published: int | None, *, whole: bool = False) -> int | None:
    """The generation the audit and publish read the staged rows after: the one ``raw``
    was last published up to, when the stage marks its rows with theirs; None (the whole
    table) for a first publish, or when ``whole`` is asked (a full refresh, ``raw``
    edited in the warehouse)."""
    return published if published is not None and not whole and has_generation(conn, table) else None


def _newer(table: CatalogTable, since: int) -> str:
    """The staged rows loaded after generation ``since`` was published."""
    stage = relation(STAGE_SCHEMA, table.warehouse_name)
    return f"select * from {stage} where {quote(GENERATION_COLUMN)} > {int(since)}"


def audit(
    conn,
    table: CatalogTable,
    *,
    source_rows: int,
    key_columns: list[str],
    since: int | None = None,
    source_null_keys: int = 0,
) -> int:
    """Audit the staged table; returns its row count.

    Args:
        since: the generation the table was last published up to (see ``publish``). The
            rows of that generation or older passed this audit then and since were only
            deleted, never added: a duplicate key now has a newer row, so only the keys of
            newer rows are checked for duplicates.
        source_null_keys: source rows with a null primary key, which no merge can keep
            (the key comparison found them; they are not counted in ``source_rows``).

    Raises:
        AuditFailed: naming the table and every audit that failed.
    """
    current = current_stage(table)
    # One scan of the stage for both counts.
    nulls = " or ".join(f"{quote(c)} is null" for c in key_columns) or "false"
    (rows, null_keys) = conn.execute(
        f"select count(*), count(*) filter (where {nulls}) from ({current}) as c"
    ).fetchall()[0]
    failures = []
    if rows != source_rows:
        failures.append(f"row count {rows} in the staged load, {source_rows} in the source")
    if key_columns:
        keys = ", ".join(quote(c) for c in key_columns)
        checked = f"({current}) as c"
        if since is not None:
            match = " and ".join(f"n.{quote(c)} = c.{quote(c)}" for c in key_columns)
            newer = _newer(table, since)
            checked = f"({current}) as c where exists (select 1 from ({newer}) as n where {match})"
        (dupes,) = conn.execute(
            f"select count(*) from (select {keys} from {checked} group by {keys} having count(*) > 1) as d"
        ).fetchall()[0]
        if null_keys or source_null_keys:
            failures.append(f"{null_keys or source_null_keys} row(s) with a null primary key ({keys})")

        if dupes:
            failures.append(f"{dupes} primary key value(s) ({keys}) on more than one row")
    if failures:
        raise AuditFailed(
            f"Table {table.source!r} failed its audit: {'; '.join(failures)}. Nothing was "
            f"published: {RAW_SCHEMA}.{table.warehouse_name} keeps the last good copy and the "
            f"bad load is kept in {STAGE_SCHEMA}.{table.warehouse_name} for inspection."
        )
    return rows


def _columns(conn, schema: str, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        "select column_name, data_type from information_schema.columns where table_schema = ? "
        "and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()


def _count(conn, relation: str) -> int:
    return conn.execute(f"select count(*) from {relation} as t").fetchall()[0][0]


def _publish_changes(
    conn, target: str, staged: str, newer: str, select: str, key_columns: list[str], staged_rows: int | None
) -> bool:
    """Bring ``target`` from the rows ``staged`` held when it was last published up to
    all of them: replace the rows whose key is in ``newer`` (the staged rows loaded
    since), drop those whose key left ``staged``. Returns False if ``target`` then does
    not hold as many rows as ``staged`` (``staged_rows`` if known; the caller then copies
    the whole table instead, in the same transaction)."""
    match = " and ".join(f"t.{quote(c)} = n.{quote(c)}" for c in key_columns)
    newer_rows = _count(conn, f"({newer})")
    if newer_rows:
        conn.execute(f"delete from {target} as t where exists (select 1 from ({newer}) as n where {match})").fetchall()
    # Every other staged row is in the target; any other row of the target had its key
    # deleted from the stage (a hard delete) since.
    if staged_rows is None:
        staged_rows = _count(conn, f"({staged})")
    if _count(conn, target) != staged_rows - newer_rows:
        conn.execute(
            f"delete from {target} as t where not exists (select 1 from ({staged}) as n where {match})"
        ).fetchall()
    if newer_rows:
        conn.execute(f"insert into {target} ({select}) select {select} from ({newer}) as n").fetchall()
    return _count(conn, target) == staged_rows


def _publish_history_changes(conn, table: CatalogTable, select: str, key_columns: list[str], since: int) -> bool:
    """Bring the history table up to the stage: every version of each key that has a row
    loaded (a new version) or retired as deleted (see ``compare_keys``) since
    generation ``since`` is copied again; dlt changes no other staged row. Returns False
    if the counts then differ (the caller copies the whole history instead)."""
    stage = relation(STAGE_SCHEMA, table.warehouse_name)
    history = relation(RAW_SCHEMA, table.warehouse_name + HISTORY_SUFFIX)
    keys = ", ".join(quote(c) for c in key_columns)
    touched = f"select distinct {keys} from ({_newer(table, since)}) as n"
    match = " and ".join(f"t.{quote(c)} = k.{quote(c)}" for c in key_columns)
    conn.execute(f"delete from {history} as t where exists (select 1 from ({touched}) as k where {match})").fetchall()
    conn.execute(
        f"insert into {history} ({select}, {', '.join(_VALIDITY)}) select {select}, {_VALIDITY_SELECT} "
        f"from {stage} as t "
        f"where exists (select 1 from ({touched}) as k where {match})"
    ).fetchall()
    return _count(conn, history) == _count(conn, stage)


def publish(
    conn,
    table: CatalogTable,
    columns: dict[str, str],
    *,
    key_columns: Sequence[str] = (),
    since: int | None = None,
    generation: int | None = None,
    started_at: datetime | None = None,
    staged_rows: int | None = None,
) -> None:
    """Swap the audited copy into ``raw`` and record its source schema, atomically.

    Args:
        key_columns, since: with the generation ``raw`` was last published up to (and the
            same columns in ``raw`` and the stage), only the staged rows newer than it are
            copied, and the rows gone from the stage deleted; else the whole table is copied.
        generation: the generation of the newest staged rows, recorded as published.
        started_at: when this run started (UTC), recorded for the next run's mark.
        staged_rows: the current staged rows, as the audit counted them (else counted).
    """
    stage = relation(STAGE_SCHEMA, table.warehouse_name)
    staged = [
        (c, t)
        for c, t in _columns(conn, STAGE_SCHEMA, table.warehouse_name)
        if not c.startswith("_dlt_") and c != GENERATION_COLUMN
    ]
    select = ", ".join(quote(c) for c, _ in staged)
    history_name = table.warehouse_name + HISTORY_SUFFIX
    incremental = (
        since is not None
        and bool(key_columns)
        and _columns(conn, RAW_SCHEMA, table.warehouse_name) == staged
        and (
            table.history != "scd2"
            or [c for c, _ in _columns(conn, RAW_SCHEMA, history_name)] == [*(c for c, _ in staged), *_VALIDITY]
        )
    )
    current = current_stage(table)
    newer_current = f"select * from ({current}) as c where {quote(GENERATION_COLUMN)} > {int(since or 0)}"
    conn.execute("begin transaction")
    try:
        conn.execute(f"create schema if not exists {quote(RAW_SCHEMA)}")
        raw = relation(RAW_SCHEMA, table.warehouse_name)
        keys = list(key_columns)
        if not (incremental and _publish_changes(conn, raw, current, newer_current, select, keys, staged_rows)):
            replace_table(conn, RAW_SCHEMA, table.warehouse_name, f"select {select} from ({current}) as c")
        if table.history == "scd2" and not (
            incremental and since is not None and _publish_history_changes(conn, table, select, keys, since)
        ):
            replace_table(conn, RAW_SCHEMA, history_name, f"select {select}, {_VALIDITY_SELECT} from {stage}")
        conn.execute(f"delete from {PUBLISHED_TABLE} where table_name = ?", [table.warehouse_name])
        if generation is not None:
            conn.execute(f"insert into {PUBLISHED_TABLE} values (?, ?)", [table.warehouse_name, generation])
        conn.execute(f"delete from {CURSORS_TABLE} where table_name = ?", [table.warehouse_name])
        if table.load == "incremental":
            conn.execute(
                f"insert into {CURSORS_TABLE} (table_name, cursor_column, history, started_at) values (?, ?, ?, ?)",
                [table.warehouse_name, table.cursor, table.history, started_at.isoformat() if started_at else None],
            )
        conn.execute(f"delete from {SNAPSHOT_TABLE} where table_name = ?", [table.warehouse_name])
        conn.executemany(
            f"insert into {SNAPSHOT_TABLE} values (?, ?, ?)",
            [(table.warehouse_name, c, t) for c, t in columns.items()],
        )
        conn.execute("commit")
    except BaseException:
        rollback(conn)
        raise
