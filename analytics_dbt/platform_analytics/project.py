"""The dbt project, located once. Building it is cheap: it only computes paths.

``dagster-dbt project prepare-and-package --file`` this module builds the manifest
ahead (Makefile, CI); under ``dagster dev`` ``prepare_if_dev`` re-parses on load.
"""

from pathlib import Path

from dagster_dbt import DbtProject

PROJECT_DIR = Path(__file__).resolve().parents[1]

analytics_project = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)
