"""The analytics code location: the dbt project and its dashboards."""

import json

import dagster as dg
from platform_shared import RUN_EXECUTOR, load_settings
from platform_shared.alerts import alert_sensors
from platform_shared.automation import automation_sensor

from .assets import build_dbt_assets, dashboard_specs
from .project import analytics_project, prepare_if_changed
from .resources import build_resources
from .translator import AnalyticsTranslator


@dg.definitions
def defs() -> dg.Definitions:
    prepare_if_changed()
    manifest = json.loads(analytics_project.manifest_path.read_text())
    return dg.Definitions(
        executor=RUN_EXECUTOR,
        assets=[build_dbt_assets(), *dashboard_specs(manifest, AnalyticsTranslator())],
        sensors=[automation_sensor("analytics_dbt"), *alert_sensors("analytics_dbt")],
        resources=build_resources(load_settings()),
    )
