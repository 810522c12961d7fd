"""The dashboards (dbt exposures) downstream of the dbt models (component.py)."""

import dagster as dg

from platform_shared import ANALYTICS_TEAM
from platform_shared.keys import DASHBOARD_PREFIX

from .translator import AnalyticsTranslator


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
