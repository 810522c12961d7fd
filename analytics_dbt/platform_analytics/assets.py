"""The dashboards (dbt exposures) downstream of the dbt models (component.py)."""

from collections.abc import Iterator

import dagster as dg

from platform_shared import ANALYTICS_TEAM
from platform_shared.column_lineage import COLUMN_LINEAGE
from platform_shared.keys import DASHBOARD_PREFIX

from .translator import AnalyticsTranslator


def dashboards(manifest: dict) -> Iterator[tuple[dict, dict[str, dict], dict[str, list[str]]]]:
    """Each dbt exposure of type dashboard, with the models it depends on by name (a source
    it reads is not one) and the mart columns it shows (``config: meta: columns:``)."""
    for exposure in manifest.get("exposures", {}).values():
        if exposure.get("type") != "dashboard":
            continue
        nodes = [manifest["nodes"][u] for u in exposure["depends_on"]["nodes"] if u in manifest["nodes"]]
        declared = ((exposure.get("config") or {}).get("meta") or exposure.get("meta") or {}).get("columns") or {}
        yield exposure, {node["name"]: node for node in nodes}, declared


def dashboard_specs(manifest: dict, translator: AnalyticsTranslator) -> list[dg.AssetSpec]:
    """One asset per dbt exposure of type dashboard; not materializable (dagster-dbt
    creates no assets for exposures). The mart columns it shows are its column lineage."""
    specs = []
    for exposure, models, declared in dashboards(manifest):
        deps = [translator.get_asset_key(_node(manifest, uid)) for uid in exposure["depends_on"]["nodes"]]
        lineage = _dashboard_lineage(exposure, models, declared, translator)
        owner = (exposure.get("owner") or {}).get("email")
        specs.append(
            dg.AssetSpec(
                key=dg.AssetKey([DASHBOARD_PREFIX, exposure["name"]]),
                deps=deps,
                description=exposure.get("description") or exposure.get("label"),
                group_name="dashboards",
                kinds={"dashboard"},
                owners=[ANALYTICS_TEAM, *([owner] if owner else [])],
                metadata={COLUMN_LINEAGE: lineage, **({"url": exposure["url"]} if exposure.get("url") else {})},
            )
        )
    return specs


def _dashboard_lineage(
    exposure: dict, models: dict[str, dict], declared: dict[str, list[str]], translator: AnalyticsTranslator
) -> dg.TableColumnLineage:
    """Each ``<model>.<column>`` the dashboard shows, read from that model's column. A
    model the exposure does not depend on, or a column the model does not declare, fails
    the location's load (and so `make check`), naming the dashboard, model and column."""
    where = f"dashboard {exposure['name']} ({exposure['original_file_path']}, config.meta.columns)"
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for model, columns in declared.items():
        if model not in models:
            raise dg.DagsterInvalidDefinitionError(
                f"{where}: reads {model!r}, which is not in its depends_on ({', '.join(sorted(models))})"
            )
        known = models[model].get("columns") or {}
        for column in columns:
            if column not in known:
                raise dg.DagsterInvalidDefinitionError(
                    f"{where}: {model}.{column} is not a column of the mart {model} (its columns: {', '.join(known)})"
                )
            key = translator.get_asset_key(models[model])
            deps[f"{model}.{column}"] = [dg.TableColumnDep(asset_key=key, column_name=column)]
    return dg.TableColumnLineage(deps_by_column=deps)


def _node(manifest: dict, unique_id: str) -> dict:
    return manifest["nodes"].get(unique_id) or manifest["sources"][unique_id]
