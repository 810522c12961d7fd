"""The ML code location: its defs/ folder (features, the churn model, scores, drift)."""

from pathlib import Path

import dagster as dg

from platform_shared import load_settings
from platform_shared.location import location_definitions

from .resources import build_resources


@dg.definitions
def defs() -> dg.Definitions:
    return location_definitions(
        "ml_features", Path(__file__).parent, resources=build_resources(load_settings()), automated=True
    )
