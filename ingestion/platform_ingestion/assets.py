"""One asset per catalog table: ``raw/<warehouse name>`` in the warehouse schema ``raw``."""


import dagster as dg
from platform_shared import (
    PLATFORM_TEAM,
    RAW_SCHEMA,
    WAREHOUSE_POOL,
    Catalog,
    CatalogTable,
    DuckDBWarehouse,
    raw_asset_key,
    table_metadata,
)
from sqlalchemy.engine import make_url

from .loading import load_table
from .resources import DltState, SourceDatabase

RAW_GROUP = "raw"


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
        owners=[PLATFORM_TEAM],
        kinds={"dlt", "duckdb"},
        pool=WAREHOUSE_POOL,
        description=table.description or f"Source table {table.source}, loaded as is.",
        metadata={
            "source_table": table.source,
            "primary_key": ", ".join(table.primary_key),
            "load_mode": table.load,
        },
    )
    def _asset(
        context: dg.AssetExecutionContext,
        warehouse: DuckDBWarehouse,
        source_db: SourceDatabase,
        dlt_state: DltState,
    ) -> dg.MaterializeResult:
        result = load_table(
            table,
            source_url=source_db.url,
            warehouse_path=warehouse.path_obj,
            pipelines_dir=dlt_state.path,
        )
        context.log.info(f"{table.source}: {result.rows_loaded} rows in {result.seconds:.2f}s")
        with warehouse.connect() as conn:
            meta = table_metadata(conn, RAW_SCHEMA, table.warehouse_name)
        return dg.MaterializeResult(
            metadata={
                **meta,
                "rows_loaded": result.rows_loaded,
                "duration_s": round(result.seconds, 3),
                "backend": result.backend,
                "source": make_url(source_db.url).render_as_string(hide_password=True),
            }
        )

    return _asset


def build_assets(catalog: Catalog) -> list[dg.AssetsDefinition]:
    return [build_table_asset(t) for t in catalog.tables]
