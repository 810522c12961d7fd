"""The dbt project, located once. Building it is cheap: it only computes paths.

``dagster-dbt project prepare-and-package --file`` this module builds the manifest
ahead (Makefile, CI); under ``dagster dev`` ``prepare_if_changed`` re-parses on load
when what the manifest is parsed from changed.
"""

import hashlib
import os
import re
from pathlib import Path

from dagster_dbt import DbtProject
from dagster_dbt.dbt_project import using_dagster_dev

PROJECT_DIR = Path(__file__).resolve().parents[1]

analytics_project = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)

# Beside the manifest: the inputs it was parsed from, when `dagster dev` last parsed it.
_STAMP_NAME = "platform_manifest_inputs.txt"
_ENV_VAR = re.compile(r"""env_var\(\s*['"]([A-Za-z0-9_]+)['"]""")
_PROJECT_FOLDERS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
_PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml")


def manifest_inputs(project_dir: Path, environ: dict[str, str]) -> str:
    """A fingerprint of what ``dbt parse`` reads: every project file's path, size and
    modification time, and the value of each environment variable the files read
    through ``env_var()`` (the target, the warehouse path or URL)."""
    files = sorted(p for folder in _PROJECT_FOLDERS for p in (project_dir / folder).rglob("*") if p.is_file())
    files += [project_dir / name for name in _PROJECT_FILES if (project_dir / name).exists()]
    digest = hashlib.sha256()
    names: set[str] = set()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(project_dir)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
        if path.suffix in (".yml", ".yaml", ".sql"):
            names.update(_ENV_VAR.findall(path.read_text(errors="replace")))
    for name in sorted(names):
        digest.update(f"{name}={environ.get(name)}\n".encode())
    return digest.hexdigest()


def _stamp(manifest: Path) -> str:
    """What the stamp holds once `dagster dev` parsed: the inputs, and the manifest it wrote."""
    stat = manifest.stat()
    return f"{manifest_inputs(PROJECT_DIR, dict(os.environ))}\n{stat.st_size} {stat.st_mtime_ns}"


def prepare_if_changed() -> None:
    """Under ``dagster dev``, dagster-dbt's ``prepare_if_dev`` (a ``dbt parse``, about 9 s
    of every load on these cores, and `dagster dev` loads the locations one after another),
    unless the manifest was parsed by it from the same inputs and not rewritten since (an
    analyst's `dbt build` rewrites it)."""
    if not using_dagster_dev():
        return
    manifest = analytics_project.manifest_path
    stamp = manifest.parent / _STAMP_NAME
    if manifest.exists() and stamp.exists() and stamp.read_text() == _stamp(manifest):
        return
    analytics_project.prepare_if_dev()
    stamp.write_text(_stamp(manifest))
