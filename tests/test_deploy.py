"""Team deployments: the PostgreSQL-backed instance, per-location lock files, CODEOWNERS."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy.engine import make_url

from platform_shared.alerts import WILL_RETRY_TAG
from platform_shared.catalog import load_catalog
from platform_shared.errors import CatalogError
from platform_shared.keys import raw_asset_key
from platform_shared.lineage import GraphUnavailable, graphql
from platform_shared.settings import load_settings
from platform_shared.workspace import locations
from tools import postgres, run_all
from tools import webserver as tools_webserver

REPO = Path(__file__).resolve().parents[1]


PACKAGES = {loc.name: loc.project for loc in locations(REPO)}


def _uv() -> list[str]:
    # The Makefile exports how it runs uv (on PATH, or as a module of the machine's python3).
    if os.environ.get("UV"):
        return shlex.split(os.environ["UV"])
    return [shutil.which("uv")] if shutil.which("uv") else [sys.executable, "-m", "uv"]


LOCKS = {f"{location}/requirements.lock": ["--package", package] for location, package in PACKAGES.items()}
LOCKS["analytics_dbt/engine/requirements.lock"] = ["--package", "platform-dbt-engine", "--no-emit-project"]


@pytest.mark.parametrize("lock", LOCKS)
def test_each_location_lock_is_exported_from_the_one_resolution(lock):
    """requirements.lock equals `uv export` of uv.lock now: the three environments, dbt's
    and the dev one resolve the same versions (`make locks` after `uv lock`)."""
    exported = subprocess.run(
        [*_uv(), "export", "-q", *LOCKS[lock], "--frozen"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    body = lambda text: [line for line in text.splitlines() if not line.startswith("#")]  # noqa: E731
    assert body((REPO / lock).read_text()) == body(exported), f"{lock} is stale: run `make locks`"


def _codeowners() -> dict[str, str]:
    owners = {}
    for line in (REPO / "CODEOWNERS").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path, owner = line.split()[:2]
            owners[path.strip("/")] = owner
    return owners


@pytest.mark.parametrize("location", PACKAGES)
def test_codeowners_and_asset_owners_name_the_same_team(location):
    """@example-org/<team> in CODEOWNERS owns the folder; every asset of the location has
    team:<team> among its Dagster owners."""
    team = "team:" + _codeowners()[location].split("/")[-1]
    specs = run_all.load_location(location).resolve_all_asset_specs()
    stray = [
        s.key.to_user_string()
        for s in specs
        if team not in s.owners and not s.metadata.get("dagster/auto_created_stub_asset")
    ]
    assert specs and stray == [], f"assets of {location} not owned by {team}"


SCHEDULE = """{ scheduleOrError(scheduleSelector: {repositoryLocationName: "ingestion",
    repositoryName: "__repository__", scheduleName: "raw_tables"}) {
  ... on Schedule { id scheduleState { status } } } }"""
STOP_SCHEDULE = """mutation($id: String) { stopRunningSchedule(id: $id) {
  __typename ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }"""
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUN = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
  status tags { key value } eventConnection { events { __typename
    ... on MaterializationEvent { assetKey { path } }
    ... on ExecutionStepFailureEvent { stepKey error { message } } } } } } }"""
TICKS = """{ sensorOrError(sensorSelector: {repositoryLocationName: "analytics_dbt",
    repositoryName: "__repository__", sensorName: "analytics_dbt_automation"}) {
  ... on Sensor { sensorState { ticks(limit: 100) { id timestamp } } } } }"""


def _typenames(server: str, run_id: str) -> list[str]:
    return [e["__typename"] for e in graphql(server, RUN, {"id": run_id})["runOrError"]["eventConnection"]["events"]]


def _tags(server: str, run_id: str) -> dict[str, str]:
    return {t["key"]: t["value"] for t in graphql(server, RUN, {"id": run_id})["runOrError"]["tags"]}


def _failures(run: dict) -> str:
    return (
        "; ".join(
            f"{e['stepKey']}: {(e['error'] or {}).get('message', '').strip()}"
            for e in run["eventConnection"]["events"]
            if e["__typename"] == "ExecutionStepFailureEvent"
        )
        or "no step failed"
    )


def _ended(server: str, run_id: str) -> dict:
    """The run once it has succeeded or failed (the webserver may answer errors meanwhile)."""

    def probe():
        run = graphql(server, RUN, {"id": run_id})["runOrError"]
        return run if run["status"] in ("SUCCESS", "FAILURE") else None

    return _until(lambda: _answered(probe), 300)


def _answered(probe):
    """The probe's answer, or None while the webserver answers with an error (a request
    that met the PostgreSQL restart fails; the next one reconnects)."""
    try:
        return probe()
    except GraphUnavailable as e:
        print(f"not answered: {e}")
        return None


def _until(probe, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(2)
    raise TimeoutError(f"not within {timeout:.0f}s")


@pytest.fixture
def restartable_postgres():
    """A PostgreSQL cluster of this test's own (tools/postgres.throwaway_cluster): its
    restart cuts no other test's connections, so the tests on the machine's cluster run
    beside it."""
    if not postgres.can_make_clusters():
        reason = "restarts a PostgreSQL server of its own: needs Debian's pg_createcluster, as root"
        if os.getenv("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1 but this test {reason}")
        pytest.skip(reason)
    with postgres.throwaway_cluster() as cluster:
        yield cluster


def test_the_postgres_instance_keeps_runs_events_and_schedules_across_a_restart(
    fresh_env, restartable_postgres, tmp_path, monkeypatch
):
    """The PostgreSQL server restarts in the middle of a run, then the webserver and daemon
    stop: the run ends well (itself, or the retry the instance launches when the restart
    cut one of its statements) and its history, schedules and ticks are intact."""
    admin, cluster = restartable_postgres
    home = Path(fresh_env["DAGSTER_HOME"])
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    url = make_url(admin)
    env = fresh_env | {
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_PORT": str(url.port),
        "DAGSTER_PG_USER": url.username,
        "DAGSTER_PG_PASSWORD": url.password,
        "DAGSTER_PG_DB": url.database,
    }
    subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "instance", "migrate"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    log = tmp_path / "dagster_dev.log"

    with tools_webserver.dagster_dev(env, log) as server:
        tables = [t.warehouse_name for t in load_catalog(load_settings().catalog_path).tables]
        params = {
            "selector": {
                "repositoryLocationName": "ingestion",
                "repositoryName": "__repository__",
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": raw_asset_key(t).path} for t in tables],
            }
        }
        run_id = graphql(server, LAUNCH, {"params": params})["launchRun"]["run"]["runId"]
        # Once the first table is loading, the server restarts (every connection cut) under
        # the run worker, the daemon and the webserver; dagster-postgres reconnects.
        _until(lambda: "ExecutionStepStartEvent" in _typenames(server, run_id), 180)
        postgres.restart_local_cluster(cluster)
        runs = [_ended(server, run_id)]
        if runs[-1]["status"] == "FAILURE":
            # A statement the restart cut fails the step (dagster-postgres retries connecting,
            # not statements); the instance's run_retries then retries the run from failure.
            # (The instance tags the run just after it records the failure.)
            will_retry = _until(lambda: _tags(server, run_id).get(WILL_RETRY_TAG), 30)
            assert will_retry == "true", _failures(runs[-1])
            retry_id = _until(lambda: _tags(server, run_id).get("dagster/auto_retry_run_id"), 120)
            print(f"the run failed at the restart ({_failures(runs[-1])}); its retry {retry_id} ran")
            runs.append(_ended(server, retry_id))
        final_id = run_id if len(runs) == 1 else retry_id
        assert runs[-1]["status"] == "SUCCESS", _failures(runs[-1])
        materialized = {
            "/".join(e["assetKey"]["path"])
            for run in runs
            for e in run["eventConnection"]["events"]
            if e["__typename"] == "MaterializationEvent"
        }
        assert materialized == {raw_asset_key(t).to_user_string() for t in tables}
        schedule = graphql(server, SCHEDULE)["scheduleOrError"]
        assert schedule["scheduleState"]["status"] == "RUNNING"
        stopped = graphql(server, STOP_SCHEDULE, {"id": schedule["id"]})["stopRunningSchedule"]
        assert stopped["scheduleState"]["status"] == "STOPPED", stopped
        ticks = _until(lambda: graphql(server, TICKS)["sensorOrError"]["sensorState"]["ticks"], 120)
        events = graphql(server, RUN, {"id": final_id})["runOrError"]["eventConnection"]["events"]

    # The state lives in PostgreSQL, not in the processes that wrote it: after they stopped,
    # a new process (this one) on the same instance reads the run, its events, the stopped
    # schedule and the sensor's ticks.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from platform_ingestion.defs.operations import purge_old_runs

    materialized_keys = lambda logs: sorted(  # noqa: E731
        e.dagster_event.asset_key.to_user_string()
        for e in logs
        if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
    )
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(final_id).status == dg.DagsterRunStatus.SUCCESS
        then = sorted("/".join(e["assetKey"]["path"]) for e in events if e["__typename"] == "MaterializationEvent")
        assert then and materialized_keys(instance.all_logs(final_id)) == then
        states = {(s.instigator_type.value, s.name): s for s in instance.all_instigator_state()}
        assert states[("SCHEDULE", "raw_tables")].status.value == "STOPPED"
        sensor = states[("SENSOR", "analytics_dbt_automation")]
        after = instance.get_ticks(sensor.instigator_origin_id, sensor.selector_id, limit=1000)
        # (GraphQL gives a tick's timestamp to the microsecond.)
        assert {t["timestamp"] for t in ticks} <= {round(t.timestamp, 6) for t in after}

        # The purge job deletes finished runs and their event logs older than its cut-off.
        assert instance.get_run_by_id(run_id) is not None
        purge = purge_old_runs.execute_in_process(
            instance=instance, run_config={"ops": {"purge_runs": {"config": {"older_than_days": 0}}}}
        )
        assert purge.success and purge.output_for_node("purge_runs") >= 1
        assert instance.get_run_by_id(run_id) is None
        assert instance.all_logs(run_id) == []
        assert instance.get_run_by_id(purge.run_id) is not None  # not its own run


def test_dg_loads_the_three_projects_from_their_own_environments():
    """dg.toml: `dg check defs` loads each project with <project>/.venv (make envs)."""
    for location in PACKAGES:
        assert (REPO / location / ".venv" / "bin" / "python").exists(), f"run `make envs` ({location})"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dg"), "check", "defs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "All definitions loaded successfully." in done.stdout + done.stderr


def test_make_dev_s_dg_dev_runs_each_location_from_its_own_environment(fresh_env, tmp_path):
    """`make dev` is `dg dev`: every location of dg.toml loads, each code server runs from
    <location>/.venv (its own lock file), and the global graph holds all their assets."""
    names = [loc.name for loc in locations(REPO)]
    with tools_webserver.dagster_dev(fresh_env, tmp_path / "dg_dev.log", workspace=None) as server:
        entries = graphql(server, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }")
        assert [(e["name"], e["loadStatus"]) for e in entries["workspaceOrError"]["locationEntries"]] == [
            (name, "LOADED") for name in names
        ]
        processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
        for loc in locations(REPO):
            assert f"{REPO / loc.path}/.venv/bin/python" in processes, f"no process of {loc.name}'s own environment"
        nodes = graphql(server, "{ assetNodes { assetKey { path } repository { location { name } } } }")["assetNodes"]
        assert {n["repository"]["location"]["name"] for n in nodes} == set(names)
        assert ["raw", "orders"] in [n["assetKey"]["path"] for n in nodes]


def test_dg_validates_the_components_yaml_and_a_mistake_is_named(tmp_path):
    """`dg check yaml` checks the raw-tables component's attributes against its typed model:
    the committed file passes; a misspelt key fails it, naming the file; loading the
    location names the table, the key and the keys allowed."""
    dg_cli = str(Path(sys.executable).parent / "dg")
    done = subprocess.run(
        [dg_cli, "check", "yaml"], cwd=REPO / "ingestion", capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    project = tmp_path / "ingestion"
    shutil.copytree(REPO / "ingestion", project, ignore=shutil.ignore_patterns(".venv", "__pycache__", "tests"))
    component = project / "platform_ingestion" / "defs" / "raw_tables" / "defs.yaml"
    component.write_text(component.read_text().replace("      primary_key: order_id", "      primry_key: order_id"))
    done = subprocess.run([dg_cli, "check", "yaml"], cwd=project, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode != 0 and f"{component}:" in out and "primry_key" in out, out[-3000:]
    with pytest.raises(
        CatalogError, match=rf"{component}: table 'orders': unknown key 'primry_key'; allowed: .*primary_key"
    ):
        load_catalog(component)
    # The location itself, as a code server loads it, fails with that message.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(REPO / "shared")])}
    env.pop("INGESTION_CATALOG", None)
    done = subprocess.run(
        [sys.executable, "-c", "from platform_ingestion.definitions import defs; defs()"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"CatalogError: {component}: table 'orders': unknown key 'primry_key'; allowed: " in done.stderr, done.stderr
