"""Session fixtures: one tiny platform in a temporary folder, shared by the suite.

Building it (demo database, three locations materialized) takes about a minute, so it is
built once (once for all the workers of `pytest -n`) and tests only read it.
"""

from __future__ import annotations

import fcntl
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from platform_shared import lineage
from platform_shared import settings as platform_settings
from platform_shared.demo_data import generate
from tools import run_all
from tools import webserver as tools_webserver

REPO = Path(__file__).resolve().parents[1]


TEST_SCALE = 0.1


@dataclass
class Platform:
    root: Path
    env: dict[str, str]
    source_url: str
    warehouse: Path
    results: dict[str, run_all.LocationResult]
    instance: dg.DagsterInstance


def platform_env(root: Path) -> dict[str, str]:
    """The settings of a new platform living in ``root`` (its instance's folder made)."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return _settings(root)


def _settings(root: Path) -> dict[str, str]:
    """The settings of the platform living in ``root`` (names from the settings module)."""
    home = root / "dagster_home"
    return {
        platform_settings.SOURCE_DATABASE_URL: f"sqlite:///{root}/app.db",
        platform_settings.WAREHOUSE_PATH: str(root / "warehouse.duckdb"),
        platform_settings.MODEL_DIR: str(root / "models"),
        platform_settings.ALERT_LOG: str(root / "alerts.log"),
        platform_settings.DAGSTER_HOME: str(home),
    }


def new_platform(root: Path, scale: float = TEST_SCALE) -> dict[str, str]:
    """The settings of a new platform in ``root``, with its demo source database."""
    env = platform_env(root)
    generate(env[platform_settings.SOURCE_DATABASE_URL], scale=scale)
    return env


@pytest.fixture
def fresh_env(tmp_path) -> dict[str, str]:
    return new_platform(tmp_path)


@pytest.fixture(scope="session")
def platform_factory():
    """``new_platform`` for fixtures of a wider scope than a test."""
    return new_platform


@pytest.fixture(scope="session")
def platform(tmp_path_factory, request) -> Platform:
    """Built by the first worker of `pytest -n` (make test) that needs it, under a file
    lock; the others wait for it and read the same folder (tests only read it)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if hasattr(request.config, "workerinput") else base  # a pytest-xdist worker's
    root = shared / "platform"
    mp = pytest.MonkeyPatch()
    with open(shared / "platform.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = root / "results.pickle"
        env = platform_env(root) if not built.exists() else _settings(root)
        for name, value in env.items():
            mp.setenv(name, value)
        instance = dg.DagsterInstance.get()
        if not built.exists():
            generate(env[platform_settings.SOURCE_DATABASE_URL], scale=TEST_SCALE)
            results = {loc: run_all.run_location(loc, instance) for loc in run_all.LOCATIONS}
            built.write_bytes(pickle.dumps(results))
        results = pickle.loads(built.read_bytes())
    yield Platform(
        root,
        env,
        env[platform_settings.SOURCE_DATABASE_URL],
        Path(env[platform_settings.WAREHOUSE_PATH]),
        results,
        instance,
    )
    instance.dispose()
    mp.undo()


@dataclass
class Webserver:
    url: str

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return lineage.graphql(self.url, query, variables)


@pytest.fixture(scope="session")
def webserver(platform) -> Webserver:
    """The real Dagster webserver on workspace.yaml, loading the three locations."""
    with tools_webserver.webserver(env=platform.env, log=platform.root / "webserver.log") as url:
        yield Webserver(url)
