"""The ML code location: loads and merges, the work lives in assets.py."""

import dagster as dg
from platform_shared import RUN_EXECUTOR, load_settings
from platform_shared.alerts import alert_sensors
from platform_shared.automation import automation_sensor

from . import assets
from .resources import build_resources


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        executor=RUN_EXECUTOR,
        assets=dg.load_assets_from_modules([assets]),
        asset_checks=dg.load_asset_checks_from_modules([assets]),
        sensors=[automation_sensor("ml_features"), *alert_sensors("ml_features")],
        resources=build_resources(load_settings()),
    )
