"""The dbt project, located once. Building it is cheap: it only computes paths.

``dagster-dbt project prepare-and-package --file`` this module builds the manifest
ahead (Makefile, CI); under ``dagster dev`` ``prepare_if_changed`` re-parses on load
when what the manifest is parsed from changed.
"""

import hashlib
import os
import re
import shutil
import sys
import tempfile
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from dagster_dbt.dbt_project import using_dagster_dev
from filelock import FileLock
from packaging import version

PROJECT_DIR = Path(__file__).resolve().parents[1]

analytics_project = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)


def dbt_executable() -> str:
    """The engine's dbt (analytics_dbt/engine/.venv, `make envs`: the location's own
    environment has no dbt-core), else dbt beside this Python (the dev environment has it),
    else `dbt` on PATH (the image puts the engine's bin/ there). The engine's first: it
    starts in half the time of the dev environment's, which holds more packages (`time
    dbt --version`: 3.2-3.4 s against 6.0-6.7 s here), and it is the dbt deployments run."""
    for candidate in (PROJECT_DIR / "engine" / ".venv" / "bin" / "dbt", Path(sys.executable).parent / "dbt"):
        if candidate.exists():
            return str(candidate)
    return "dbt"


class EngineDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, for a dbt that runs from another environment.

    Written by hand because dagster-dbt has no switch for it: before each `dbt` command
    of dbt-core (not Fusion) it opens an in-process dbt adapter, which only serves its
    ``fetch_row_counts`` and ``fetch_column_metadata`` (this project records row counts
    and columns itself, after dbt exits). Without dbt-core in this environment that logs a
    warning with a traceback on every run; with it, it loads the profile and macros in
    process for nothing. The dbt command runs the same either way."""

    def _initialize_dbt_core_adapter(self, args):  # dagster-dbt 0.29.27 (pinned)
        return None

    @cached_property
    def _cli_version(self) -> version.Version:  # dagster-dbt 0.29.27 (pinned)
        """The version of dbt-core in the environment of ``dbt_executable``, read from its
        installed package's folder name. dagster-dbt runs `dbt --version` instead before
        every dbt command: 2.7 s for the engine's dbt here, 6 s for the dev environment's
        (`time dbt --version`), a quarter of a warm dbt step. A dbt whose environment has
        no such folder (Fusion, an unusual layout) is still asked."""
        found = _installed_dbt_core(Path(self.dbt_executable))
        return version.parse(found) if found else super()._cli_version


def engine_dbt() -> EngineDbtCliResource:
    """The dbt resource of this project, running the engine's dbt (``dbt_executable``)."""
    # DbtCliResource.__init__ takes a DbtProject; pyright reads the subclass's fields (str).
    return EngineDbtCliResource(project_dir=analytics_project, dbt_executable=dbt_executable())  # pyright: ignore[reportArgumentType]


def _installed_dbt_core(executable: Path) -> str | None:
    """The dbt-core version installed beside ``executable`` (a virtualenv's bin/dbt), if any."""
    resolved = shutil.which(str(executable))
    if resolved is None:
        return None
    for info in Path(resolved).parent.parent.glob("lib/python*/site-packages/dbt_core-*.dist-info"):
        return info.name.removeprefix("dbt_core-").removesuffix(".dist-info")
    return None


# Beside the manifest: the inputs it was parsed from, when `dagster dev` last parsed it.
_STAMP_NAME = "platform_manifest_inputs.txt"
_PARTIAL_PARSE = "partial_parse.msgpack"
_ENV_VAR = re.compile(r"""env_var\(\s*['"]([A-Za-z0-9_]+)['"]""")
_PROJECT_FOLDERS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
_PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml")
# Read by profiles.yml, but only as the paths of files it attaches under fixed names: the
# manifest is the same at any path (checked: two parses differ only in timestamps), and
# each test's or deployment's own warehouse must not cost a 9-25 s re-parse.
_PATH_ONLY_VARIABLES = {"WAREHOUSE_PATH", "DBT_PERSONAL_WAREHOUSE"}


def manifest_inputs(project_dir: Path, environ: dict[str, str]) -> str:
    """A fingerprint of what ``dbt parse`` reads: every project file's path, size and
    modification time, and the value of each environment variable the files read
    through ``env_var()`` (the target, the server warehouse's URL), but the paths of
    attached files."""
    files = sorted(p for folder in _PROJECT_FOLDERS for p in (project_dir / folder).rglob("*") if p.is_file())
    files += [project_dir / name for name in _PROJECT_FILES if (project_dir / name).exists()]
    digest = hashlib.sha256()
    names: set[str] = set()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(project_dir)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
        if path.suffix in (".yml", ".yaml", ".sql"):
            names.update(_ENV_VAR.findall(path.read_text(errors="replace")))
    for name in sorted(names - _PATH_ONLY_VARIABLES):
        digest.update(f"{name}={environ.get(name)}\n".encode())
    return digest.hexdigest()


def _stamp(manifest: Path) -> str:
    """What the stamp holds once `dagster dev` parsed: the inputs, and the manifest it wrote."""
    stat = manifest.stat()
    return f"{manifest_inputs(PROJECT_DIR, dict(os.environ))}\n{stat.st_size} {stat.st_mtime_ns}"


def prepare_if_changed() -> None:
    """Under ``dagster dev``, a ``dbt parse`` (what dagster-dbt's ``prepare_if_dev`` runs;
    about 9 s of every load on these cores, and `dagster dev` loads the locations one after
    another), unless the manifest was parsed here from the same inputs and not rewritten
    since (an analyst's `dbt build` rewrites it)."""
    if not using_dagster_dev():
        return
    manifest = analytics_project.manifest_path
    stamp = manifest.parent / _STAMP_NAME

    def fresh() -> bool:
        return manifest.exists() and stamp.exists() and stamp.read_text() == _stamp(manifest)

    if fresh():
        return
    # One process parses at a time (a code server and a run worker may load together), as
    # dagster-dbt's preparer guards it; the one that waited finds the manifest fresh.
    with FileLock(manifest.with_suffix(".concurrent-update-lock"), timeout=300):
        if fresh():
            return
        _parse_into(manifest.parent)
        stamp.write_text(_stamp(manifest))


def _parse_into(target: Path) -> None:
    """What dagster-dbt's prepare_if_dev runs (the project has no dbt packages: hub
    packages cannot be installed here), with the engine's dbt: its preparer takes `dbt`
    from PATH, which the location's own environment lacks.

    dbt rewrites manifest.json in place, and other processes read it without the lock
    (a run worker, `make check`, a copy of the folder): one of them read it half-written
    (`orjson.JSONDecodeError: unexpected end of data`). So dbt parses into a folder beside
    it, seeded with the partial-parse state, and the new files replace the old whole."""
    for left in target.glob(".parse-*"):  # a parse killed half way (this runs under the lock)
        shutil.rmtree(left, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".parse-", dir=target))
    try:
        if (target / _PARTIAL_PARSE).exists():
            shutil.copy2(target / _PARTIAL_PARSE, staging / _PARTIAL_PARSE)
        engine_dbt().cli(["parse", "--quiet"], target_path=staging).wait()
        if (staging / "dbt.log").exists():  # dbt logs beside its target (unless told not to)
            with open(target / "dbt.log", "ab") as log:
                log.write((staging / "dbt.log").read_bytes())
        for name in (_PARTIAL_PARSE, "semantic_manifest.json", "manifest.json"):
            if (staging / name).exists():
                os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
