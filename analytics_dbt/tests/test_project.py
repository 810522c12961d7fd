"""When `dagster dev` re-parses the dbt project: the fingerprint of what dbt parse reads."""

import shutil
from pathlib import Path

from platform_analytics.project import PROJECT_DIR, manifest_inputs


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs", ".venv", "tests", "*.py"))
    return copy


def test_the_same_project_and_settings_need_no_new_parse(tmp_path):
    project = _copy(tmp_path)
    env = {"WAREHOUSE_PATH": "data/warehouse.duckdb"}
    assert manifest_inputs(project, env) == manifest_inputs(project, dict(env, UNRELATED="x"))


def test_an_edited_model_needs_a_new_parse(tmp_path):
    project = _copy(tmp_path)
    before = manifest_inputs(project, {})
    model = next((project / "models").rglob("*.sql"))
    model.write_text(model.read_text() + "\n")
    assert manifest_inputs(project, {}) != before


def test_a_setting_the_project_reads_needs_a_new_parse(tmp_path):
    # profiles.yml reads WAREHOUSE and DBT_TARGET through env_var(): another target is
    # another manifest.
    project = _copy(tmp_path)
    assert manifest_inputs(project, {"WAREHOUSE": "duckdb"}) != manifest_inputs(project, {"WAREHOUSE": "postgres"})
    assert manifest_inputs(project, {}) != manifest_inputs(project, {"DBT_TARGET": "personal"})


def test_another_warehouse_path_needs_no_new_parse(tmp_path):
    # The warehouse file is attached under a fixed name: its path never reaches the
    # manifest, and each test or deployment has its own.
    project = _copy(tmp_path)
    assert manifest_inputs(project, {"WAREHOUSE_PATH": "/a/warehouse.duckdb"}) == manifest_inputs(
        project, {"WAREHOUSE_PATH": "/b/warehouse.duckdb", "DBT_PERSONAL_WAREHOUSE": "/c/p.duckdb"}
    )
