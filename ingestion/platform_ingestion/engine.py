"""Load one source table into the warehouse: the ingestion engine, without Dagster.

A run is the README's load steps, one function each, in this order:

1. ``read_source`` and ``inspect``: reflect the source table; in the table's session
   (``table_session``: one connection, the table's lock), read what the warehouse recorded
   of the last publish (its columns, generation, cursor column, start time) and compare
   columns (drift). A reconciliation (``reconcile.py``) starts the same way.
2. ``plan_load``: decide what to read (a pure function: tests call it without a database).
3. ``extract``: the changed rows merged directly (``direct.py``), or a dlt load
   (``loading.py``) of the window the plan names.
4. ``converge``: in one snapshot of the source (``snapshot.py``), compare its row count
   and keys with the stage; delete the rows gone from the source, load the ones the stage
   lacks (committed during the extract, or missed by the cursor).
5. ``audit`` and ``publish`` (``audit.py``): row count, keys and schema, then one
   transaction into ``raw``.

Only one run of a table loads at a time: on PostgreSQL a lock in the warehouse queues a
second run (its pool lets several steps run at once); DuckDB has one writer anyway.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Literal, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from platform_shared import (
    RAW_SCHEMA,
    CatalogError,
    CatalogTable,
    Warehouse,
    load_settings,
    raw_asset_key,
    table_metadata,
)
from platform_shared.lineage import column_impact_text
from platform_shared.settings import PII_HASH_KEY
from platform_shared.warehouse import exclusive, index

from . import audit as wap
from . import direct
from .loading import (
    GENERATION_COLUMN,
    STAGE_SCHEMA,
    LoadRequest,
    LoadResult,
    check_source_values,
    configure_duckdb,
    invalid_utf8,
    load_to_stage,
    naming_unreadable_values,
    overlap,
    reflect_source,
    source_columns,
    warehouse_column_names,
)
from .snapshot import key_summary, keys, source_snapshot

Path_ = Literal["direct", "dlt"]


@dataclass(frozen=True)
class Recorded:
    """What the warehouse recorded of the table's last publish, and its staged cursor."""

    published: int | None = None  # the generation published up to (incremental tables)
    resumable: bool = False  # published with today's cursor column and history mode
    staged_max: date | None = None  # the largest staged cursor value (timestamps and dates)
    last_started: datetime | None = None  # when the last publishing run started (UTC)


@dataclass(frozen=True)
class Plan:
    """What one run of a table reads, decided before any row moves."""

    path: Path_  # "direct": merge the changes without dlt; "dlt": a dlt load of ``window``
    window: LoadRequest
    generation: int | None  # marks the staged rows of an incremental table
    mark: date | None = None  # the cursor value changes are read from, before the overlap
    cursor_ahead: date | None = None  # the staged cursor, when it passed the last run's start
    whole_table: bool = False  # columns were added: every row is read again to fill them


def plan_load(
    table: CatalogTable,
    *,
    request: LoadRequest,
    drift: wap.Drift,
    recorded: Recorded,
    beginning,
) -> Plan:
    """Decide what a run reads.

    - A full table, a first load, a backfill or a full refresh: dlt, as asked.
    - A published incremental table resumes from its mark: the largest staged cursor,
      but never past the start of the run that last published it (a cursor value in the
      future, from a clock ahead, would otherwise stall the table until then).
    - Columns added since (schema evolution): every row is read again, from ``beginning``
      (the cursor type's first value), so that the new columns are filled whatever a
      row's cursor; otherwise rows that did not change would keep them empty for ever.
    - Otherwise, without drift: the changed rows are merged directly (``direct.py``); a
      date cursor is read by dlt from its mark, less the overlap (whole days), never from
      dlt's own state.

    Example:
        >>> t = CatalogTable("orders", "orders", ("order_id",), load="incremental", cursor="updated_at")
        >>> r = Recorded(published=3, resumable=True, staged_max=datetime(2030, 1, 1),
        ...              last_started=datetime(2026, 12, 2, 9))
        >>> p = plan_load(t, request=LoadRequest(), drift=wap.Drift(), recorded=r, beginning=datetime.min)
        >>> p.path, p.generation, p.mark, p.cursor_ahead
        ('direct', 4, datetime.datetime(2026, 12, 2, 9, 0), datetime.datetime(2030, 1, 1, 0, 0))
    """
    if table.load != "incremental":
        return Plan("dlt", request, None)
    generation = (recorded.published or 0) + 1
    plain = request == LoadRequest()
    mark = ahead = None
    if plain and recorded.published is not None and recorded.resumable and recorded.staged_max is not None:
        mark = recorded.staged_max
        cap: date | None = recorded.last_started
        if cap is not None and not isinstance(mark, datetime):
            cap = cap.date()
        elif cap is not None and isinstance(mark, datetime) and mark.tzinfo is not None:
            cap = cap.replace(tzinfo=UTC)
        if cap is not None and mark > cap:
            mark, ahead = cap, mark
    if plain and recorded.published is not None and drift.added:
        end = direct.end_of_time(mark) if mark is not None else None
        return Plan("dlt", LoadRequest(backfill_from=beginning, backfill_to=end), generation, mark, ahead, True)
    if mark is None:
        return Plan("dlt", request, generation)
    if not drift.changed and isinstance(mark, datetime):
        return Plan("direct", request, generation, mark, ahead)
    # dlt reads the same window when it loads instead (after drift, or a date cursor):
    # its own cursor state is then neither read nor moved. (A date cursor never resumes
    # from dlt's state: one row dated ahead of the clock once would have left it there.)
    return Plan("dlt", from_mark(table, mark), generation, mark, ahead)


def from_mark(table: CatalogTable, mark: date) -> LoadRequest:
    """dlt's window from a cursor's mark, less the overlap, to the end of time."""
    dates = not isinstance(mark, datetime)
    return LoadRequest(backfill_from=mark - overlap(table, dates=dates), backfill_to=direct.end_of_time(mark))


@dataclass
class Convergence:
    source_rows: int  # the source's rows in the snapshot, less keys deleted before their rows were read
    deleted: int  # staged rows whose key left the source
    loaded: int  # rows of source keys the stage lacked, loaded now
    keys_compared: bool  # whether every key was compared (the summaries differed)
    source_null_keys: int = 0  # source rows with a null primary key (not in source_rows)


class Source(NamedTuple):
    """The source table as a run reads it: reflected now, its loaded columns (source name
    -> SQL type), their warehouse names, and the primary key's warehouse names."""

    reflected: sa.Table
    columns: dict[str, str]
    names: dict[str, str]
    key_columns: list[str]


def read_source(table: CatalogTable, source_url: str) -> Source:
    """Reflect the source table and refuse values a load would lose (``check_source_values``):
    the first step of a load and of a reconciliation."""
    reflected = reflect_source(source_url, table)
    columns = source_columns(reflected, table)
    check_source_values(table, reflected, source_url)
    names = warehouse_column_names([*columns, *table.primary_key])
    return Source(reflected, columns, names, [names[c] for c in table.primary_key])


@contextmanager
def table_session(warehouse: Warehouse, table: CatalogTable):
    """One warehouse connection for a table's whole run, holding the table's lock (one run
    of a table at a time). On DuckDB, dlt's own connections then share the open database
    instead of opening (and checkpointing) it each time."""
    with warehouse.connect() as conn, one_load_per_table(conn, table):
        if warehouse.is_duckdb:
            configure_duckdb(conn)
        yield conn


def table_lock_id(table: CatalogTable) -> int:
    """The PostgreSQL advisory lock of a table's loads."""
    return zlib.crc32(f"platform_ingestion:{table.warehouse_name}".encode())


def one_load_per_table(conn, table: CatalogTable):
    """Queue a second run of the same table on a PostgreSQL warehouse until the first is
    done (DuckDB has one writer process at a time)."""
    return exclusive(conn, table_lock_id(table))


def _beginning(column: sa.Column | None):
    """The first value of a cursor column's type: a window from it reads every row."""
    if column is not None and isinstance(column.type, sa.Date) and not isinstance(column.type, sa.DateTime):
        return date(1, 1, 1)
    aware = column is not None and getattr(column.type, "timezone", False)
    return datetime(1, 1, 1, tzinfo=UTC if aware else None)


def inspect(conn, table: CatalogTable, columns: dict[str, str], names: dict[str, str]) -> tuple[wap.Drift, Recorded]:
    drift = wap.detect_drift(conn, table, columns)
    if table.load != "incremental":
        return drift, Recorded()
    published = wap.published_generation(conn, table)
    resumable = (
        published is not None
        and table.cursor in names
        and wap.published_cursor(conn, table) == (table.cursor, table.history)
        and wap.has_generation(conn, table)
    )
    return drift, Recorded(
        published=published,
        resumable=resumable,
        staged_max=direct.high_water_mark(conn, table, names[table.cursor_column]) if resumable else None,
        last_started=wap.published_started_at(conn, table),
    )


def extract(
    conn,
    table: CatalogTable,
    plan: Plan,
    *,
    warehouse: Warehouse,
    source_url: str,
    reflected: sa.Table,
    columns: list[str],
    names: dict[str, str],
    key_columns: list[str],
    pipelines_dir,
    hash_key: str,
) -> LoadResult:
    """Step 3: the plan's read, landed in ``raw_stage``."""
    if plan.path == "direct":
        mark = plan.mark
        assert isinstance(mark, datetime)  # plan_load: a direct merge resumes from a timestamp
        try:
            result = direct.load_changes(
                conn,
                table,
                mark=mark,
                source_url=source_url,
                reflected=reflected,
                columns=columns,
                names=names,
                key_columns=key_columns,
                generation=plan.generation,
                hash_key=hash_key,
            )
            if result is not None:
                return result
        except BaseException as exc:
            if not invalid_utf8(exc, source_url):
                raise
        # dlt reads the same window instead (to replace invalid UTF-8, or for a source
        # connectorx does not read).
        plan = replace(plan, window=from_mark(table, mark))
    result = load_to_stage(
        table,
        source_url=source_url,
        warehouse=warehouse,
        pipelines_dir=pipelines_dir,
        request=plan.window,
        hash_key=hash_key,
        generation=plan.generation,
        reflected=reflected,
    )
    if plan.mark is not None:
        result.cursor_value = direct.high_water_mark(conn, table, names[table.cursor_column])
    return result


def converge(
    conn,
    table: CatalogTable,
    *,
    source_url: str,
    key_columns: list[str],
    generation: int | None,
    rows_extracted: int,
    load_missing,
) -> Convergence:
    """Step 4: bring the stage's keys to the source's, as of one snapshot of the source.

    The summary (row count, smallest and largest key) is read first; only when it differs
    from the stage's are all keys read, in the same snapshot (``audit.compare_keys``).
    Source keys the stage lacks are loaded by ``load_missing(keys)`` after the snapshot:
    one deleted meanwhile has no row to load, and leaves the expected count.

    A table without a primary key (full loads only) is one extract, one statement and so
    one snapshot of the source: its staged rows are compared with the rows extracted.
    """
    if not key_columns:
        return Convergence(rows_extracted, 0, 0, False)
    with source_snapshot(source_url) as source:
        summary = key_summary(source, table)
        if wap.same_keys_as_source(conn, table, key_columns, summary):
            return Convergence(summary[0], 0, 0, False)
        comparison = wap.compare_keys(conn, table, keys(source, table, key_columns), generation)
    # A null key matches no staged row and loads none: the audit fails on it.
    missing = [k for k in comparison.missing if None not in k]
    null_keys = len(comparison.missing) - len(missing)
    loaded = gone = 0
    if missing:
        result = load_missing(missing)
        # Unable to load them here (a source connectorx does not read): the audit fails
        # on the count and names the table; the next run's dlt load picks them up.
        loaded = result.rows_loaded if result is not None else 0
        gone = len(missing) - loaded if result is not None else 0
    return Convergence(comparison.source_rows - gone - null_keys, comparison.deleted, loaded, True, null_keys)


def ingest_table(
    table: CatalogTable,
    *,
    request: LoadRequest,
    warehouse: Warehouse,
    source_url: str,
    pipelines_dir,
    hash_key: str,
) -> dict:
    """Extract, converge, audit and publish one table; returns its metadata. No Dagster here.

    Raises:
        CatalogError: the table hashes columns and ``hash_key`` is empty (nothing is read).
    """
    if table.columns.hash and not hash_key:
        raise CatalogError(
            f"Table {table.source!r} hashes {list(table.columns.hash)} but the hash key is empty: an unkeyed "
            f"hash of personal data is reversed with a dictionary. Set {PII_HASH_KEY} (a deployment must), or "
            "leave it unset to use the local key file. Nothing was loaded."
        )
    started = datetime.now(UTC).replace(tzinfo=None)
    reflected, columns, names, key_columns = read_source(table, source_url)
    with table_session(warehouse, table) as conn:
        drift, recorded = inspect(conn, table, columns, names)
        try:
            wap.check_drift(table, drift, full_refresh=request.full_refresh)
        except wap.SchemaDrift as exc:
            # Name what the changed columns break downstream, in every location (and what they do not).
            # Source names (a dropped column is not in ``names``): their warehouse names.
            dropped = drift.dropped if table.on_column_dropped == "fail" else []  # (an ignored drop broke nothing)
            changed = list(warehouse_column_names([*dropped, *drift.retyped]).values())
            key = raw_asset_key(table.warehouse_name).to_user_string()
            impact = column_impact_text(load_settings().webserver_url, key, changed)
            raise wap.SchemaDrift(f"{exc} {impact}") from None
        plan = plan_load(
            table,
            request=request,
            drift=drift,
            recorded=recorded,
            beginning=_beginning(reflected.c.get(table.cursor or "")),
        )
        common: dict[str, Any] = dict(
            source_url=source_url,
            reflected=reflected,
            columns=list(columns),
            names=names,
            key_columns=key_columns,
            hash_key=hash_key,
        )
        with naming_unreadable_values(table, reflected, source_url):
            result = extract(conn, table, plan, warehouse=warehouse, pipelines_dir=pipelines_dir, **common)
            converged = converge(
                conn,
                table,
                source_url=source_url,
                key_columns=key_columns,
                generation=plan.generation,
                rows_extracted=result.rows_loaded,
                load_missing=lambda missing: direct.load_keys(
                    conn, table, keys=missing, generation=plan.generation, **common
                ),
            )
        since = wap.publish_since(conn, table, recorded.published, whole=request.full_refresh)
        if since is not None:  # the audit and publish read the rows newer than it
            index(conn, STAGE_SCHEMA, table.warehouse_name, GENERATION_COLUMN)
        audited = wap.audit(
            conn,
            table,
            source_rows=converged.source_rows,
            key_columns=key_columns,
            since=since,
            source_null_keys=converged.source_null_keys,
        )
        wap.publish(
            conn,
            table,
            columns,
            key_columns=key_columns,
            since=since,
            generation=plan.generation,
            started_at=started,
            staged_rows=audited,
        )
        tags = {names[c]: {"pii": "hashed"} for c in table.columns.hash}
        # raw holds what the audit counted (publish copies the stage's current rows).
        meta = table_metadata(conn, RAW_SCHEMA, table.warehouse_name, tags, rows=audited)
    return {
        **meta,
        "rows_loaded": result.rows_loaded + converged.loaded,
        "rows_deleted": converged.deleted,
        # Rows of source keys the stage lacked after the extract: committed while it read,
        # or missed by the cursor (an old updated_at), loaded by key.
        "rows_loaded_by_key": converged.loaded,
        # Whether finding hard deletes took a comparison of every key with the source, or
        # the row counts and the smallest and largest keys showed there were none.
        "keys_compared": converged.keys_compared,
        "cursor_value": str(result.cursor_value) if result.cursor_value is not None else "-",
        "cursor_ahead_of_clock": (
            f"the largest {table.cursor} staged, {plan.cursor_ahead}, is after the start of the last run "
            f"({recorded.last_started} UTC): read from that start instead"
            if plan.cursor_ahead
            else "-"
        ),
        "columns_filled": "every row read again to fill the added column(s)" if plan.whole_table else "-",
        "duration_s": round(result.seconds, 3),
        "backend": result.backend,
        "source": make_url(source_url).render_as_string(hide_password=True),
        "column_mapping": {c: w for c, w in names.items() if c != w} or "-",
        **drift.as_metadata(),
    }
