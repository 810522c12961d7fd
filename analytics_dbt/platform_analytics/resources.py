"""The resources of the analytics location (its one module of resources)."""

from platform_shared import Settings, build_warehouse

from .project import engine_dbt


def build_resources(settings: Settings) -> dict:
    return {
        "dbt": engine_dbt(),
        "warehouse": build_warehouse(settings),
    }
