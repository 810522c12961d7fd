"""The dbt models as assets, and the dashboards (dbt exposures) downstream of them."""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from platform_shared import ANALYTICS_TEAM, Warehouse, load_settings, table_metadata, warehouse_pool
from platform_shared.keys import DASHBOARD_PREFIX

from .project import analytics_project
from .translator import AnalyticsTranslator


def build_dbt_assets() -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=analytics_project.manifest_path,
        dagster_dbt_translator=AnalyticsTranslator(),
        project=analytics_project,
        pool=warehouse_pool(load_settings()),
    )
    def analytics_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
        invocation = dbt.cli(["build"], context=context, raise_on_error=False)
        # Held back until dbt exits: DuckDB lets no other process read the file while dbt
        # writes it. (dagster-dbt's fetch_row_counts reopens the profile's database, which
        # is the attached alias here, not a file it can open.)
        events = list(invocation.stream())
        with warehouse.connect(read_only=True) as conn:
            yield from (_with_table_metadata(conn, e, invocation.manifest) for e in events)
        if not invocation.is_successful():
            raise dg.Failure(f"dbt build failed: {invocation.get_error()}")

    return analytics_models


def _with_table_metadata(conn, event, manifest: dict):
    """Add row count and column schema of the built relation to a model's Output."""
    if not isinstance(event, dg.Output):
        return event
    node = manifest["nodes"].get(event.metadata.get("unique_id").value if "unique_id" in event.metadata else "")
    if not node or node["resource_type"] not in ("model", "seed", "snapshot"):
        return event
    return event.with_metadata({**event.metadata, **table_metadata(conn, node["schema"], node["alias"])})


def dashboard_specs(manifest: dict, translator: AnalyticsTranslator) -> list[dg.AssetSpec]:
    """One asset per dbt exposure of type dashboard; not materializable (dagster-dbt
    creates no assets for exposures)."""
    specs = []
    for exposure in manifest.get("exposures", {}).values():
        if exposure.get("type") != "dashboard":
            continue
        deps = [translator.get_asset_key(_node(manifest, uid)) for uid in exposure["depends_on"]["nodes"]]
        owner = (exposure.get("owner") or {}).get("email")
        specs.append(
            dg.AssetSpec(
                key=dg.AssetKey([DASHBOARD_PREFIX, exposure["name"]]),
                deps=deps,
                description=exposure.get("description") or exposure.get("label"),
                group_name="dashboards",
                kinds={"dashboard"},
                owners=[ANALYTICS_TEAM, *([owner] if owner else [])],
                metadata={"url": exposure["url"]} if exposure.get("url") else {},
            )
        )
    return specs


def _node(manifest: dict, unique_id: str) -> dict:
    return manifest["nodes"].get(unique_id) or manifest["sources"][unique_id]
