"""The dbt project's models, tests and seeds as assets, and its exposures as dashboards."""

import json

import dagster as dg

from ..assets import build_dbt_assets, dashboard_specs
from ..project import analytics_project, prepare_if_changed
from ..translator import AnalyticsTranslator


@dg.definitions
def dbt_project() -> dg.Definitions:
    prepare_if_changed()
    manifest = json.loads(analytics_project.manifest_path.read_text())
    return dg.Definitions(assets=[build_dbt_assets(), *dashboard_specs(manifest, AnalyticsTranslator())])
