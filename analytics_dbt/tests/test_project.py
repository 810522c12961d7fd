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


def test_old_invocation_folders_go_and_recent_or_other_files_stay(tmp_path):
    """dagster-dbt's per-invocation target folders beyond the newest `keep` go once
    untouched for an hour; a recent one (a step still running), and what is not an
    invocation's folder (the manifest, a folder of another name), stay."""
    import os
    import time

    from platform_analytics.component import INVOCATION_MAX_SECONDS, prune_invocations

    now = time.time()
    ages = {"analytics_models-aaaaaaa-0000001": 10, "analytics_models-aaaaaaa-0000002": 2 * INVOCATION_MAX_SECONDS}
    ages |= {f"analytics_daily_models-bbbbbbb-00000{i:02d}": (3 + i) * INVOCATION_MAX_SECONDS for i in range(4)}
    ages |= {"compiled": 9 * INVOCATION_MAX_SECONDS, "recent-ccccccc-0000003": 20}
    for name, age in ages.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "run_results.json").write_text("{}")
        os.utime(tmp_path / name / "run_results.json", (now - age, now - age))
        os.utime(tmp_path / name, (now - age, now - age))
    (tmp_path / "manifest.json").write_text("{}")
    # A long step: its folder is old, but dbt appended to its log a minute ago.
    running = tmp_path / "analytics_daily_models-bbbbbbb-0000003"
    (running / "dbt.log").write_text("...")
    os.utime(running, (now - 9 * INVOCATION_MAX_SECONDS, now - 9 * INVOCATION_MAX_SECONDS))

    # Newest first: aaaaaaa-0000001, bbbbbbb-0000003 (its log), recent-...3, aaaaaaa-0000002, bbbbbbb 00..02.
    gone = prune_invocations(tmp_path, keep=1)
    assert sorted(f.name for f in gone) == sorted(
        ["analytics_models-aaaaaaa-0000002", *(f"analytics_daily_models-bbbbbbb-00000{i:02d}" for i in range(3))]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "analytics_daily_models-bbbbbbb-0000003",
        "analytics_models-aaaaaaa-0000001",
        "compiled",
        "manifest.json",
        "recent-ccccccc-0000003",
    ]
    assert prune_invocations(tmp_path, keep=1) == []


def test_a_step_keeps_only_the_parse_state_its_dbt_wrote(tmp_path, monkeypatch):
    import time

    from platform_analytics.component import PARSE_STATE, invocation_folder, keep_parse_state, prune_invocations

    monkeypatch.setenv("DBT_TARGET_PATH", "target")  # relative: under the project folder
    kept = tmp_path / "target" / f"analytics_models.{PARSE_STATE}"
    kept.parent.mkdir()
    kept.write_bytes(b"old")
    folder = invocation_folder(tmp_path, "analytics_models", "0123456789abcdef")
    assert folder.parent == kept.parent and (folder / PARSE_STATE).read_bytes() == b"old"
    started = time.time_ns()
    # A concurrent command kept a newer state meanwhile; this one's dbt stopped before parsing.
    kept.write_bytes(b"newer")
    assert not keep_parse_state(folder, "analytics_models", started)
    assert kept.read_bytes() == b"newer"
    # dbt parsed and wrote its state (a second or more after it started; file times here
    # are as coarse as the kernel's clock tick): the step keeps it, and nothing else is left.
    time.sleep(0.1)
    (folder / PARSE_STATE).write_bytes(b"parsed")
    assert keep_parse_state(folder, "analytics_models", started)
    assert kept.read_bytes() == b"parsed"
    assert sorted(p.name for p in kept.parent.iterdir()) == [folder.name, kept.name]
    # The kept state is never taken for an invocation folder to prune.
    assert prune_invocations(kept.parent, keep=0) == []
