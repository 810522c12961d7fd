"""Alerts reach a local HTTP receiver, with the impact of the failed asset across locations;
and the real daemon (`dagster dev`) runs the automation and the alert sensors."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

# The freshness daemon's own event: the test reports a failure instead of waiting hours.
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

from platform_shared import alerts, lineage, load_settings
from platform_shared.lineage import graphql
from platform_shared.settings import ALERT_LOG, ALERT_WEBHOOK_URL, DAGSTER_WEBSERVER_URL
from tools import run_all
from tools import webserver as tools_webserver

REPO = Path(__file__).resolve().parents[1]


class Receiver:
    """A webhook: records every JSON body POSTed to it."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = next((a for a in self.received if predicate(a)), None)
            if match:
                return match
            time.sleep(1)
        raise TimeoutError(f"no matching alert in {timeout:.0f}s; received: {self.received}")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def test_a_freshness_failure_alerts_once_with_its_impact(webserver, receiver, monkeypatch):
    monkeypatch.setenv(ALERT_WEBHOOK_URL, receiver.url)
    monkeypatch.setenv(DAGSTER_WEBSERVER_URL, webserver.url)
    defs = run_all.load_location("analytics_dbt")
    sensor = defs.get_sensor_def("analytics_dbt_freshness_alert")
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            FreshnessStateChange(
                key=dg.AssetKey("orders"),
                new_state=FreshnessState.FAIL,
                previous_state=FreshnessState.PASS,
                state_change_timestamp=time.time(),
            )
        )
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        sensor(context)
        assert len(receiver.received) == 1
        alert = receiver.received[0]
        assert alert["kind"] == "freshness" and alert["stale_assets"] == ["orders"]
        summary = alert["impact"]["orders"]["summary"]
        assert summary.startswith("orders: ") and "dashboard" in summary and "teams: analytics" in summary
        assert summary in alert["text"]
        # Still failing at the next tick: no second alert.
        sensor(dg.build_sensor_context(instance=instance, definitions=defs, cursor=context.cursor))
        assert len(receiver.received) == 1


def test_an_unreachable_webhook_loses_no_alert(tmp_path, monkeypatch):
    monkeypatch.setenv(ALERT_WEBHOOK_URL, f"http://127.0.0.1:{tools_webserver.free_port()}/hook")
    monkeypatch.setenv(ALERT_LOG, str(tmp_path / "alerts.log"))
    where = alerts.deliver({"kind": "test", "text": "raw/orders failed"})
    assert where == str(tmp_path / "alerts.log")
    (logged,) = [json.loads(line) for line in (tmp_path / "alerts.log").read_text().splitlines()]
    assert logged["text"] == "raw/orders failed" and "Connection refused" in logged["delivery_error"]
    assert load_settings().alert_log == tmp_path / "alerts.log"


def test_a_run_that_will_be_retried_alerts_only_through_its_retry(tmp_path, monkeypatch):
    """With run_retries (deploy/dagster.yaml) the instance tags a failed run it will retry:
    the sensor stays quiet about it and alerts on a run that will not be retried."""
    monkeypatch.setenv(ALERT_LOG, str(tmp_path / "alerts.log"))
    monkeypatch.setenv(DAGSTER_WEBSERVER_URL, "http://127.0.0.1:9")  # nothing listens: impact unavailable

    @dg.asset
    def breaks() -> None:
        raise RuntimeError("the source went away")

    sensor = alerts.alert_sensors("ingestion")[0]
    with dg.instance_for_test() as instance:
        sent = []
        for will_retry in ("true", "false"):
            run_id = dg.materialize([breaks], instance=instance, raise_on_error=False).run_id
            instance.add_run_tags(run_id, {alerts.WILL_RETRY_TAG: will_retry})
            (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            sensor(
                dg.build_run_status_sensor_context(
                    sensor_name=sensor.name,
                    dagster_event=failure.dagster_event,
                    dagster_instance=instance,
                    dagster_run=instance.get_run_by_id(run_id),
                ).for_run_failure()
            )
            log = tmp_path / "alerts.log"
            sent.append([json.loads(line)["run_id"] for line in log.read_text().splitlines()] if log.exists() else [])
    assert sent[0] == [] and sent[1] == [run_id]
    (alert,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert alert["failed_assets"] == ["breaks"] and "breaks not materialized" in alert["text"]
    # The step's own error, as the asset raised it (a drift error names the column's readers).
    assert alert["step_errors"] == ["breaks: RuntimeError: the source went away"]
    assert alert["text"].endswith("\nbreaks: RuntimeError: the source went away")


LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
} }
"""
LATEST = """
query($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
  ... on Asset { assetMaterializations(limit: 1) { runId } }
} }
"""


def _launch(url, key: list[str]) -> str:
    params = {
        "selector": {
            "repositoryLocationName": "ingestion",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": key}],
        }
    }
    result = graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def _wait_materialized(url, key: list[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = graphql(url, LATEST, {"path": key})["assetOrError"].get("assetMaterializations")
        if found:
            return found[0]["runId"]
        time.sleep(2)
    raise TimeoutError(f"{'/'.join(key)} was not materialized in {timeout:.0f}s")


def test_with_a_real_daemon_a_failed_table_alerts_and_a_good_one_flows_on(fresh_env, tmp_path, receiver):
    """`dagster dev` (webserver and daemon) on a source whose orders table is gone."""
    env = fresh_env | {ALERT_WEBHOOK_URL: receiver.url}
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute("drop table orders")
    with tools_webserver.dagster_dev(env, tmp_path / "dagster_dev.log") as url:
        assert lineage.fetch_graph(url).load_errors == {}
        failed_run = _launch(url, ["raw", "orders"])
        good_run = _launch(url, ["raw", "customers"])

        # The ingestion location's run-failure sensor, in the daemon, posts the alert.
        alert = receiver.wait_for(lambda a: a.get("run_id") == failed_run, timeout=240)
        assert alert["kind"] == "run_failure" and alert["location"] == "ingestion"
        assert alert["failed_assets"] == ["raw/orders"]
        assert "orders" in alert["error"] or "orders" in alert["text"]
        (error,) = alert["step_errors"]
        assert error.startswith("raw__orders: ") and "'orders'" in error and error in alert["text"]
        report = alert["impact"]["raw/orders"]
        assert set(report["downstream"]) == {"analytics_dbt", "ml_features"}
        assert report["roles"]["dashboard"] >= 1 and report["summary"] in alert["text"]

        # raw/customers passed its checks: the analytics automation sensor, in the
        # daemon, runs its staging model in a run of its own.
        _wait_materialized(url, ["raw", "customers"], timeout=120)
        assert _wait_materialized(url, ["stg_app__customers"], timeout=240) != good_run
