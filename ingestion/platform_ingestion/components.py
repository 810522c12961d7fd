"""The raw-tables component: the catalog of source tables, configured in the location's
``defs/raw_tables/defs.yaml``, becomes one asset per table with its checks and schedules."""

from __future__ import annotations

import dagster as dg

from platform_shared import load_catalog, load_settings
from platform_shared.catalog import CatalogEntries

from .assets import build_assets, build_checks, build_schedules


class RawTables(dg.Component, dg.Resolvable, CatalogEntries):
    """One asset per source table (``raw/<warehouse_name>``), loaded with write-audit-publish;
    a ``matches_source`` check per table; the hourly ``raw_tables`` and daily
    ``reconcile_raw_tables`` schedules.

    The attributes are the catalog: ``defaults:`` and ``tables:``, validated by their typed
    models (``platform_shared.catalog``). ``INGESTION_CATALOG`` points the location at
    another catalog file instead (a component file like this one, or its attributes alone).
    """

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        own = context.path / "defs.yaml"
        path = load_settings().catalog_path
        catalog = self.catalog(own) if path == own.resolve() else load_catalog(path)
        return dg.Definitions(
            assets=build_assets(catalog), asset_checks=build_checks(catalog), schedules=build_schedules(catalog)
        )
