"""The location's own environment (analytics_dbt/.venv) holds no dbt-core: it loads from
the prepared manifest without importing dbt, and runs dbt from its engine environment."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]
OWN_ENVIRONMENT = Path(sys.prefix).resolve() == (PROJECT_DIR / ".venv").resolve()

pytestmark = pytest.mark.skipif(not OWN_ENVIRONMENT, reason="about analytics_dbt/.venv (make test-locations)")


def test_the_location_loads_without_importing_dbt_core():
    probe = (
        "import sys\nfrom platform_analytics.definitions import defs\n"
        "defs().resolve_asset_graph()\n"
        "print(sorted(m for m in sys.modules if m == 'dbt' or m.startswith('dbt.')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_DIR)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_dbt_runs_from_the_engine_environment():
    from platform_analytics.resources import build_resources
    from platform_shared import load_settings

    dbt = build_resources(load_settings())["dbt"]
    assert Path(dbt.dbt_executable) == PROJECT_DIR / "engine" / ".venv" / "bin" / "dbt"
    version = subprocess.run([dbt.dbt_executable, "--version"], capture_output=True, text=True, check=True)
    assert "duckdb" in version.stdout and "postgres" in version.stdout
    # The version the resource reads from the engine's installed package, without running
    # dbt, is the one dbt prints.
    assert f"installed: {dbt._cli_version}\n" in version.stdout


def _parses(target: Path) -> int:
    """How many `dbt parse` commands dbt's log in target/ records."""
    log = target / "dbt.log"
    return log.read_text(errors="replace").count("Command `dbt parse`") if log.exists() else 0


def test_under_dagster_dev_a_changed_project_is_parsed_once_with_the_engine(tmp_path):
    """`dagster dev` (and `dg check defs`) in this environment, with no dbt on PATH, two
    processes loading at once (a code server and a run worker): a project whose parse
    stamp does not match is re-parsed by the engine's dbt, by one of them.

    On a copy of the project (its code first on the path, the engine's environment linked),
    so that make test runs this beside the suite, whose code servers read target/."""
    from platform_analytics.project import _STAMP_NAME

    copy = tmp_path / "analytics_dbt"
    shutil.copytree(PROJECT_DIR, copy, ignore=shutil.ignore_patterns(".venv", "target", "logs", "tests", "__pycache__"))
    (copy / "engine" / ".venv").symlink_to(PROJECT_DIR / "engine" / ".venv")
    manifest = copy / "target" / "manifest.json"
    manifest.parent.mkdir()
    shutil.copy(PROJECT_DIR / "target" / "manifest.json", manifest)
    before, parses = manifest.stat(), _parses(manifest.parent)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DAGSTER_IS_DEV_CLI": "1", "PYTHONPATH": str(copy)}
    probe = (
        "from platform_analytics import project\n"
        f"assert str(project.PROJECT_DIR) == {str(copy)!r}, project.PROJECT_DIR\n"
        "from platform_analytics.definitions import defs; defs(); print('loaded')"
    )
    loads = [
        subprocess.Popen(
            [sys.executable, "-c", probe],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=copy,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [load.communicate(timeout=300) for load in loads]
    assert [load.returncode for load in loads] == [0, 0], [err[-2000:] for _, err in outputs]
    assert manifest.stat().st_mtime_ns > before.st_mtime_ns
    # Replaced whole, never rewritten in place: a reader never sees it half-written.
    assert manifest.stat().st_ino != before.st_ino
    assert json.loads(manifest.read_text())["metadata"]["dbt_schema_version"]
    assert not list(manifest.parent.glob(".parse-*"))
    assert (manifest.parent / _STAMP_NAME).exists()
    assert _parses(manifest.parent) == parses + 1, "both processes parsed"
