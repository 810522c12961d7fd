"""The resources of the analytics location (its one module of resources)."""

import sys
from pathlib import Path

from dagster_dbt import DbtCliResource
from platform_shared import Settings, build_warehouse

from .project import analytics_project


def _dbt_executable() -> str:
    # A code server in its own environment has no dbt on PATH: use the one installed
    # beside this Python.
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"


def build_resources(settings: Settings) -> dict:
    return {
        "dbt": DbtCliResource(project_dir=analytics_project, dbt_executable=_dbt_executable()),
        "warehouse": build_warehouse(settings),
    }
