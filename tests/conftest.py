"""Session fixtures: one tiny platform in a temporary folder, shared by the suite.

Building it (demo database, three locations materialized) takes about a minute, so it is
built once and tests only read it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from platform_shared import settings as platform_settings
from platform_shared.demo_data import generate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import run_all  # noqa: E402

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
    """The settings of a platform living in ``root`` (names from the settings module)."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return {
        platform_settings.SOURCE_DATABASE_URL: f"sqlite:///{root}/app.db",
        platform_settings.WAREHOUSE_PATH: str(root / "warehouse.duckdb"),
        platform_settings.MODEL_DIR: str(root / "models"),
        platform_settings.DAGSTER_HOME: str(home),
    }


@pytest.fixture(scope="session")
def platform(tmp_path_factory) -> Platform:
    root = tmp_path_factory.mktemp("platform")
    env = platform_env(root)
    mp = pytest.MonkeyPatch()
    for name, value in env.items():
        mp.setenv(name, value)
    generate(env[platform_settings.SOURCE_DATABASE_URL], scale=TEST_SCALE)
    instance = dg.DagsterInstance.get()
    results = {loc: run_all.run_location(loc, instance) for loc in run_all.LOCATIONS}
    yield Platform(root, env, env[platform_settings.SOURCE_DATABASE_URL],
                   Path(env[platform_settings.WAREHOUSE_PATH]), results, instance)
    instance.dispose()
    mp.undo()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Webserver:
    url: str

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        import requests

        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


_LOCATIONS_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name
    locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""


@pytest.fixture(scope="session")
def webserver(platform) -> Webserver:
    """The real Dagster webserver on workspace.yaml, loading the three locations."""
    port = _free_port()
    log = open(platform.root / "webserver.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env={**os.environ, **platform.env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Webserver(f"http://127.0.0.1:{port}")
    try:
        _wait_for_locations(server, proc, platform.root / "webserver.log")
        yield server
    finally:
        _stop(proc)
        log.close()


def _wait_for_locations(server: Webserver, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"webserver exited: {log.read_text()[-3000:]}")
        try:
            entries = server.graphql(_LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
            states = {e["name"]: e["locationOrLoadError"] for e in entries}
            if states and all(s is not None for s in states.values()):
                errors = {n: s for n, s in states.items() if s["__typename"] != "RepositoryLocation"}
                assert not errors, errors
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    raise TimeoutError(f"the webserver did not load the workspace in {timeout}s")


def _stop(proc: subprocess.Popen, grace: float = 20) -> None:
    """Signal the whole process group, wait a bounded time, then kill."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
