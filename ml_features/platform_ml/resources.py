"""The resources of the ML location (its one module of resources)."""

from pathlib import Path

import dagster as dg
from platform_shared import DuckDBWarehouse, Settings


class ModelStore(dg.ConfigurableResource):
    """The folder that keeps versioned model artifacts (MODEL_DIR)."""

    model_dir: str

    @property
    def path(self) -> Path:
        return Path(self.model_dir)


def build_resources(settings: Settings) -> dict:
    return {
        "warehouse": DuckDBWarehouse(path=str(settings.warehouse_path)),
        "model_store": ModelStore(model_dir=str(settings.model_dir)),
    }
