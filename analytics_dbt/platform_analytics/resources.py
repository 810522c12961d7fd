"""The resources of the analytics location (its one module of resources)."""

from platform_shared import Settings, build_warehouse

from .project import EngineDbtCliResource, analytics_project, dbt_executable


def build_resources(settings: Settings) -> dict:
    return {
        "dbt": EngineDbtCliResource(project_dir=analytics_project, dbt_executable=dbt_executable()),
        "warehouse": build_warehouse(settings),
    }
