"""The resources of the ingestion location (its one module of resources)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from platform_shared import DuckDBWarehouse, Settings


class SourceDatabase(dg.ConfigurableResource):
    """The application database that ingestion reads (and never writes)."""

    url: str


class DltState(dg.ConfigurableResource):
    """Where the per-table dlt pipelines keep their state (beside the warehouse file)."""

    pipelines_dir: str

    @property
    def path(self) -> Path:
        return Path(self.pipelines_dir)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": DuckDBWarehouse(path=str(settings.warehouse_path)),
        "source_db": SourceDatabase(url=settings.source_database_url),
        "dlt_state": DltState(pipelines_dir=str(settings.warehouse_path.parent / "dlt_pipelines")),
    }
