"""One asset per catalog table: ``raw/<warehouse name>`` in the warehouse schema ``raw``."""

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from platform_shared import (
    HISTORY_SUFFIX,
    RAW_SCHEMA,
    RECONCILE_CHECK,
    Catalog,
    CatalogTable,
    PlatformError,
    Warehouse,
    load_settings,
    raw_asset_key,
    warehouse_pool,
)

from .resources import DltState, PiiHasher, SourceDatabase

# The loading code (dlt, pandas, pyarrow: about 3 s to import here) is imported when a step
# runs, not when the location loads: a code server, `dg check defs` and the daemon never
# need it.
if TYPE_CHECKING:
    from .loading import LoadRequest

RAW_GROUP = "raw"
MAX_RETRIES = 3
BACKOFF_SECONDS = 2.0
# Failures a retry can fix: the source was briefly unreachable or busy. Anything else
# (a missing table, bad credentials, a failed audit) fails at once.
_TRANSIENT = (
    "connection refused",
    "timeout",
    "timed out",
    "could not connect",
    "connection reset",
    "server closed the connection",
    "too many connections",
    "database is locked",
    "temporarily unavailable",
    "the database system is starting up",
)


class LoadConfig(dg.Config):
    """Run config of a table's asset: a date-range backfill or a full refresh."""

    backfill_from: str | None = None
    backfill_to: str | None = None
    full_refresh: bool = False

    def request(self) -> "LoadRequest":
        from .loading import LoadRequest

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
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=table.freshness_hours)),
        metadata={
            "source_table": table.source,
            "primary_key": ", ".join(table.primary_key) or "-",
            "load_mode": table.load,
            "history": table.history,
            **(
                {"history_table": f"{RAW_SCHEMA}.{table.warehouse_name}{HISTORY_SUFFIX}"}
                if table.history == "scd2"
                else {}
            ),
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
        from .engine import ingest_table

        try:
            metadata = ingest_table(
                table,
                request=config.request(),
                warehouse=warehouse,
                source_url=source_db.url,
                pipelines_dir=dlt_state.path,
                hash_key=pii.secret,
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
        if metadata["cursor_ahead_of_clock"] != "-":
            context.log.warning(f"{table.source}: {metadata['cursor_ahead_of_clock']}")
        return dg.MaterializeResult(metadata=metadata)

    return _asset


def build_reconcile_check(table: CatalogTable) -> dg.AssetChecksDefinition:
    """The check that compares every row of the table with its source, and repairs what
    differs (``reconcile.py``); it passes when nothing differed. A repair is recorded as a
    materialization of the table, so what reads it downstream sees new data."""
    key = raw_asset_key(table.warehouse_name)

    @dg.asset_check(
        asset=key,
        name=RECONCILE_CHECK,
        blocking=False,
        pool=warehouse_pool(load_settings()),
        description=f"Every row of {table.source} equals the source's (by primary key and every column), "
        "before the repair this check makes.",
    )
    def _check(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse, source_db: SourceDatabase, pii: PiiHasher
    ) -> dg.AssetCheckResult:
        from .reconcile import reconcile_table

        try:
            found, metadata = reconcile_table(table, warehouse=warehouse, source_url=source_db.url, hash_key=pii.secret)
        except PlatformError as e:
            raise dg.Failure(description=str(e), allow_retries=False) from e
        if not found.matched:
            context.log.warning(f"{table.source}: {found} before the repair")
            context.op_execution_context.log_event(
                dg.AssetMaterialization(key, metadata={**metadata, "repaired_by": "reconciliation"})
            )
        return dg.AssetCheckResult(passed=found.matched, metadata=metadata)

    return _check


def build_schedules(catalog: Catalog) -> list[dg.ScheduleDefinition]:
    """Per distinct cron of the catalog, the schedule that loads the tables that use it,
    and per distinct reconcile cron, the one that reconciles them."""
    return [
        *_schedules(
            catalog,
            lambda t: t.schedule,
            "raw_tables",
            "Loads",
            lambda keys: dg.AssetSelection.assets(*keys).without_checks(),
        ),
        *_schedules(
            catalog,
            lambda t: t.reconcile_schedule,
            "reconcile_raw_tables",
            "Compares with the source",
            lambda keys: dg.AssetSelection.checks(*(dg.AssetCheckKey(k, RECONCILE_CHECK) for k in keys)),
        ),
    ]


def _schedules(catalog: Catalog, cron_of, name: str, verb: str, target) -> list[dg.ScheduleDefinition]:
    crons: dict[str, list[dg.AssetKey]] = {}
    for t in catalog.tables:
        if t.primary_key or name == "raw_tables":
            crons.setdefault(cron_of(t), []).append(raw_asset_key(t.warehouse_name))
    return [
        dg.ScheduleDefinition(
            name=f"{name}_{i}" if len(crons) > 1 else name,
            cron_schedule=cron,
            target=target(keys),
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"{verb} {len(keys)} raw table(s) on {cron!r} (from the catalog).",
        )
        for i, (cron, keys) in enumerate(sorted(crons.items()))
    ]


def build_assets(catalog: Catalog) -> list[dg.AssetsDefinition]:
    return [build_table_asset(t) for t in catalog.tables]


def build_checks(catalog: Catalog) -> list[dg.AssetChecksDefinition]:
    """A reconciliation check per table with a primary key (a keyless table is replaced
    whole by every load)."""
    return [build_reconcile_check(t) for t in catalog.tables if t.primary_key]
