"""The ingestion code location: its defs/ folder (the raw-tables component, housekeeping)."""

from pathlib import Path

import dagster as dg

from platform_shared import load_settings
from platform_shared.location import location_definitions

from .resources import build_resources


@dg.definitions
def defs() -> dg.Definitions:
    return location_definitions(
        "ingestion", Path(__file__).parent, resources=build_resources(load_settings()), automated=False
    )
