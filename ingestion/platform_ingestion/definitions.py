"""The ingestion code location: its defs/ folder (the raw-tables component, housekeeping)."""

from pathlib import Path

import dagster as dg

from platform_shared import load_catalog, load_settings
from platform_shared.location import location_definitions

from .resources import build_resources

# The raw-tables component's file: the catalog, unless INGESTION_CATALOG names another.
CATALOG_COMPONENT = Path(__file__).parent / "defs" / "raw_tables" / "defs.yaml"


@dg.definitions
def defs() -> dg.Definitions:
    try:
        return location_definitions(
            "ingestion", Path(__file__).parent, resources=build_resources(load_settings()), automated=False
        )
    except Exception:
        # dg checks the component's YAML against its typed model and names the file and
        # line, in pydantic's terms; the catalog's own reading of the same model names the
        # table, the key and the keys allowed. Raised (CatalogError) if that is what failed.
        load_catalog(CATALOG_COMPONENT)
        raise
