"""The ingestion code location: loads and merges, the work lives in assets.py."""

import dagster as dg
from platform_shared import load_catalog, load_settings

from .assets import build_assets
from .resources import build_resources


@dg.definitions
def defs() -> dg.Definitions:
    settings = load_settings()
    return dg.Definitions(
        assets=build_assets(load_catalog(settings.catalog_path)),
        resources=build_resources(settings),
    )
