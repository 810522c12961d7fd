"""One asset per catalog table: ``raw/<warehouse name>`` in the warehouse schema ``raw``."""

from datetime import datetime, timedelta

import dagster as dg
from platform_shared import (
    RAW_SCHEMA,
    Catalog,
    CatalogTable,
    Warehouse,
    PlatformError,
    raw_asset_key,
    load_settings,
    table_metadata,
    warehouse_pool,
)
from sqlalchemy.engine import make_url

from . import audit as wap
from . import direct
from .loading import (
    LoadRequest,
    configure_duckdb,
    invalid_utf8,
    load_to_stage,
    reflect_source,
    source_columns,
    source_key_summary,
    source_keys,
    source_row_count,
    warehouse_column_names,
)
from .resources import DltState, PiiHasher, SourceDatabase

RAW_GROUP = "raw"
MAX_RETRIES = 3
BACKOFF_SECONDS = 2.0
# Failures a retry can fix: the source was briefly unreachable or busy. Anything else
# (a missing table, bad credentials, a failed audit) fails at once.
_TRANSIENT = (
    "connection refused", "timeout", "timed out", "could not connect", "connection reset",
    "server closed the connection", "too many connections", "database is locked",
    "temporarily unavailable", "the database system is starting up",
)


class LoadConfig(dg.Config):
    """Run config of a table's asset: a date-range backfill or a full refresh."""

    backfill_from: str | None = None
    backfill_to: str | None = None
    full_refresh: bool = False

    def request(self) -> LoadRequest:
        parse = lambda v: datetime.fromisoformat(v) if v else None  # noqa: E731
        return LoadRequest(parse(self.backfill_from), parse(self.backfill_to), self.full_refresh)


def is_transient(error: BaseException) -> bool:
    """Whether a retry can help: looks through the whole cause chain."""
    seen = error
    while seen is not None:
        if isinstance(seen, PlatformError):
            return False
        if any(m in str(seen).lower() for m in _TRANSIENT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def ingest_table(
    table: CatalogTable, *, request: LoadRequest, warehouse: Warehouse,
    source_url: str, pipelines_dir, hash_key: str,
) -> dict:
    """Extract, audit and publish one table; returns its metadata. No Dagster here."""
    reflected = reflect_source(source_url, table)
    columns = source_columns(reflected, table)
    # The staged rows of an incremental table carry a generation, one above the last
    # published: the audit and the publish then handle only the rows loaded since.
    incremental = table.load == "incremental"
    names = warehouse_column_names([*columns, *table.primary_key])
    key_columns = [names[c] for c in table.primary_key]
    # One connection for the whole table: dlt's own connections to the DuckDB file then
    # share the open database instead of opening (and checkpointing) it each time.
    with warehouse.connect() as conn:
        if warehouse.is_duckdb:
            configure_duckdb(conn)
        drift = wap.detect_drift(conn, table, columns)
        published = wap.published_generation(conn, table) if incremental else None
        wap.check_drift(table, drift, full_refresh=request.full_refresh)
        generation = (published or 0) + 1 if incremental else None
        # A run that resumes a published incremental table reads from the staged rows'
        # largest cursor (minus the overlap), whether it merges them itself or has dlt load.
        mark = direct.high_water_mark(conn, table, names[table.cursor]) if (
            incremental and published is not None and request == LoadRequest() and table.cursor in names
            and wap.published_cursor(conn, table) == (table.cursor, table.history)
            and wap.has_generation(conn, table)
        ) else None
        result = None
        if mark is not None and not drift.changed:
            # An hourly run: the changed rows are merged without a dlt pipeline (direct.py).
            try:
                result = direct.load_changes(
                    conn, table, mark=mark, source_url=source_url, reflected=reflected, columns=list(columns),
                    names=names, key_columns=key_columns, generation=generation, hash_key=hash_key,
                )
            except BaseException as exc:
                if not invalid_utf8(exc, source_url):
                    raise
        if result is None:
            # dlt reads the same window when it loads instead (after drift, or to replace
            # invalid UTF-8): its own cursor state, which the direct merges leave behind,
            # is then neither read nor moved.
            window = request if mark is None else LoadRequest(
                backfill_from=mark - timedelta(minutes=table.overlap_minutes), backfill_to=direct.end_of_time(mark))
            result = load_to_stage(
                table, source_url=source_url, warehouse=warehouse,
                pipelines_dir=pipelines_dir, request=window, hash_key=hash_key, generation=generation,
                reflected=reflected,
            )
            if mark is not None:
                result.cursor_value = direct.high_water_mark(conn, table, names[table.cursor])
        deleted = 0
        keys_compared = False
        if incremental and not wap.holds_only_this_load(conn, table, result.rows_loaded):
            summary = source_key_summary(source_url, table)
            source_rows = summary[0]
            # Only a hard delete leaves the stage with more rows than the source (see
            # wap.same_keys_as_source): then compare the keys to find which.
            keys_compared = not wap.same_keys_as_source(conn, table, key_columns, summary)
            if keys_compared:
                keys = source_keys(source_url, table, key_columns)
                deleted, source_rows = wap.reconcile_deletes(conn, table, keys, generation)
        else:
            source_rows = source_row_count(source_url, table)
        since = published if (
            published is not None and not request.full_refresh and wap.has_generation(conn, table)
        ) else None
        wap.audit(conn, table, source_rows=source_rows, key_columns=key_columns, since=since)
        wap.publish(conn, table, columns, key_columns=key_columns, since=since, generation=generation)
        tags = {names[c]: {"pii": "hashed"} for c in table.columns.hash}
        meta = table_metadata(conn, RAW_SCHEMA, table.warehouse_name, tags)
    return {
        **meta,
        "rows_loaded": result.rows_loaded,
        "rows_deleted": deleted,
        # Whether finding hard deletes took a comparison of every key with the source, or
        # the row counts and the smallest and largest keys showed there were none.
        "keys_compared": keys_compared,
        "cursor_value": str(result.cursor_value) if result.cursor_value is not None else "-",
        "duration_s": round(result.seconds, 3),
        "backend": result.backend,
        "source": make_url(source_url).render_as_string(hide_password=True),
        "column_mapping": {c: w for c, w in names.items() if c != w} or "-",
        **drift.as_metadata(),
    }


def build_table_asset(table: CatalogTable) -> dg.AssetsDefinition:
    """The asset that loads one source table.

    Example:
        >>> from platform_shared import CatalogTable
        >>> build_table_asset(CatalogTable("orders", "orders", ("order_id",))).key.to_user_string()
        'raw/orders'
    """

    @dg.asset(
        key=raw_asset_key(table.warehouse_name),
        group_name=RAW_GROUP,
        owners=[table.owner],
        kinds={"dlt", load_settings().warehouse},
        pool=warehouse_pool(load_settings()),
        description=table.description or f"Source table {table.source}, loaded as is.",
        tags={"pii": "hashed"} if table.columns.hash else None,
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=table.freshness_hours)
        ),
        metadata={
            "source_table": table.source,
            "primary_key": ", ".join(table.primary_key) or "-",
            "load_mode": table.load,
            "history": table.history,
            **({"history_table": f"{RAW_SCHEMA}.{table.warehouse_name}{wap.HISTORY_SUFFIX}"}
               if table.history == "scd2" else {}),
        },
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: LoadConfig,
        warehouse: Warehouse,
        source_db: SourceDatabase,
        dlt_state: DltState,
        pii: PiiHasher,
    ) -> dg.MaterializeResult:
        try:
            metadata = ingest_table(
                table, request=config.request(), warehouse=warehouse, source_url=source_db.url,
                pipelines_dir=dlt_state.path, hash_key=pii.key,
            )
        except PlatformError as e:
            raise dg.Failure(description=str(e), allow_retries=False) from e
        except Exception as e:
            if is_transient(e) and context.retry_number < MAX_RETRIES:
                wait = BACKOFF_SECONDS * 2**context.retry_number
                context.log.warning(f"{table.source}: transient source error, retry in {wait}s: {e}")
                raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from e
            raise
        context.log.info(f"{table.source}: {metadata['rows_loaded']} rows loaded")
        return dg.MaterializeResult(metadata=metadata)

    return _asset


def build_schedules(catalog: Catalog) -> list[dg.ScheduleDefinition]:
    """One schedule per distinct cron of the catalog, over the tables that use it."""
    crons: dict[str, list[dg.AssetKey]] = {}
    for t in catalog.tables:
        crons.setdefault(t.schedule, []).append(raw_asset_key(t.warehouse_name))
    return [
        dg.ScheduleDefinition(
            name=f"raw_tables_{i}" if len(crons) > 1 else "raw_tables",
            cron_schedule=cron,
            target=dg.AssetSelection.assets(*keys),
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"Loads {len(keys)} raw table(s) on {cron!r} (from the catalog).",
        )
        for i, (cron, keys) in enumerate(sorted(crons.items()))
    ]


def build_assets(catalog: Catalog) -> list[dg.AssetsDefinition]:
    return [build_table_asset(t) for t in catalog.tables]
