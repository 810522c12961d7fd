"""How dbt nodes become Dagster assets: one small helper per attribute."""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from platform_shared import ANALYTICS_TEAM, raw_asset_key
from platform_shared.automation import on_upstream_update

# Raw tables load hourly and must be at most 2 hours old; the marts that dashboards and
# the ML team read follow within the hour after.
MART_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=3), warn_window=timedelta(hours=2))


def _key(props: Mapping[str, Any]) -> dg.AssetKey:
    if props["resource_type"] == "source":
        # dbt sources are the ingested tables: ask the shared key scheme, never retype it.
        return raw_asset_key(props.get("identifier") or props["name"])
    return dg.AssetKey([props["name"]])


def _group(props: Mapping[str, Any]) -> str | None:
    # models/<layer>/...: the layer (staging, intermediate, marts) is the group.
    path = props.get("path") or ""
    return path.split("/")[0] if "/" in path else None


def _materialization(props: Mapping[str, Any]) -> str:
    # table, view, incremental...: what the node is in the warehouse, shown as a kind.
    return props.get("config", {}).get("materialized") or props["resource_type"]


def _blocking(test: Mapping[str, Any]) -> bool:
    # A test of severity error stops what is downstream; a warning only reports.
    return str(test.get("config", {}).get("severity", "error")).lower() == "error"


class AnalyticsTranslator(DagsterDbtTranslator):
    """Keys sources as ``raw/<table>``, groups models by layer, owns them for analytics,
    updates them when their upstream updated and passed its blocking checks, gives marts
    a freshness policy, and makes error-severity dbt tests blocking checks."""

    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_asset_spec(self, manifest, unique_id, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec
        spec = spec.replace_attributes(
            owners=[ANALYTICS_TEAM], automation_condition=on_upstream_update()
        ).merge_attributes(kinds={_materialization(props)})
        if _group(props) == "marts":
            spec = spec.replace_attributes(freshness_policy=MART_FRESHNESS)
        return spec

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or not _blocking(manifest["nodes"][unique_id]):
            return spec
        return spec._replace(blocking=True)

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return _key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return _group(dbt_resource_props)
