"""A newcomer adds a team location with `make location` (tools/new_location.py): in a copy
of the repo, the new location is wired into every list of locations, its own test passes,
and the contract of the global graph (the real webserver, `make check`) holds with it in."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from platform_shared.demo_data import generate
from platform_shared.settings import SOURCE_DATABASE_URL

REPO = Path(__file__).resolve().parents[1]
# dbt's target/ is not copied whole: other tests' runs write and prune folders in it while
# the copy walks it. Only the manifest the location loads from, replaced whole (never
# rewritten in place) by a parse.
SKIP = shutil.ignore_patterns(
    ".venv", "data", ".dagster", "__pycache__", ".git", ".test-logs", ".pytest_cache", "target"
)


def copy_repo(copy: Path) -> None:
    """This repository without environments, data or dbt's output, into ``copy``, with the
    dbt manifest, and dbt's environment linked (dbt runs from it)."""
    shutil.copytree(REPO, copy, ignore=SKIP)
    (copy / "analytics_dbt" / "target").mkdir()
    shutil.copy(REPO / "analytics_dbt" / "target" / "manifest.json", copy / "analytics_dbt" / "target")
    (copy / "analytics_dbt" / "engine" / ".venv").symlink_to(REPO / "analytics_dbt" / "engine" / ".venv")


def _run(args: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def test_a_new_location_joins_the_global_graph(tmp_path):
    copy = tmp_path / "repo"
    copy_repo(copy)
    python = sys.executable
    # This environment, with the copy's packages first (the new one is only there).
    packages = ["finance", "shared", "ingestion", "analytics_dbt", "ml_features"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(copy / p) for p in packages),
        "PLATFORM_ROOT": str(copy),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    env.pop("INGESTION_CATALOG", None)
    # A source of its own (the copy has no data/): `make check` compares the column
    # contract with it, and warns without one.
    source = f"sqlite:///{tmp_path}/app.db"
    generate(source, scale=0.05)
    env[SOURCE_DATABASE_URL] = source

    out = _run([python, "-m", "tools.new_location", "finance", "--team", "finance"], copy, env)
    assert "next: uv lock && make locks envs check" in out
    # What it wrote passes `make lint`'s ruff, and the root pyproject lists it beside the others.
    _run([python, "-m", "ruff", "check", "finance"], copy, env)
    _run([python, "-m", "ruff", "format", "--check", "finance"], copy, env)
    root = (copy / "pyproject.toml").read_text()
    for entry in ('"finance/tests"]', '"finance/platform_finance",', '"platform_finance", "tools"', '"finance"]'):
        assert entry in root, entry
    # What `make location` runs next: the lock, and the location's own lock file.
    # The Makefile exports how it runs uv (on PATH, or as a module of the machine's python3).
    uv = shlex.split(os.environ["UV"]) if os.environ.get("UV") else [shutil.which("uv") or "uv"]
    _run([*uv, "lock"], copy, env)
    _run(
        [*uv, "export", "-q", "--package", "platform-finance", "--frozen", "-o", "finance/requirements.lock"], copy, env
    )

    # Every list of locations names it (dg.toml, workspace files, compose, Helm, CODEOWNERS).
    _run(
        [
            python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_deploy_manifests.py",
            "-k",
            "not compose_config_validates and not refuses",
        ],
        copy,
        env,
    )
    # Its own test.
    _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "finance/tests"], copy, env)
    # The global graph: its asset reads raw/orders of the ingestion location, owned by a
    # known team, no undefined key.
    out = _run([python, "-m", "tools.check_graph", "--workspace", str(copy / "workspace.yaml")], copy, env)
    assert "OK, 0 warnings:" in out and "in 4 locations (analytics_dbt, finance, ingestion, ml_features)" in out, out
