"""The ingestion code location: loads and merges, the work lives in assets.py."""

import dagster as dg
from platform_shared import RUN_EXECUTOR, load_catalog, load_settings
from platform_shared.alerts import alert_sensors

from .assets import build_assets, build_checks, build_schedules
from .operations import purge_old_runs, purge_schedule
from .resources import build_resources


@dg.definitions
def defs() -> dg.Definitions:
    settings = load_settings()
    catalog = load_catalog(settings.catalog_path)
    return dg.Definitions(
        executor=RUN_EXECUTOR,
        assets=build_assets(catalog),
        asset_checks=build_checks(catalog),
        schedules=[*build_schedules(catalog), purge_schedule],
        jobs=[purge_old_runs],
        sensors=alert_sensors("ingestion"),
        resources=build_resources(settings),
    )
