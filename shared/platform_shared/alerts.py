"""Alerts: failed runs (failed assets and failed blocking checks) and freshness failures,
each with the impact of the failed assets across every code location.

Delivery: a JSON POST to ALERT_WEBHOOK_URL when set (Slack-compatible: the JSON has a
``text`` field), else one JSON line appended to ALERT_LOG (default data/alerts.log). A
webhook that fails does not lose the alert: it goes to the log with the delivery error.

Each location runs its own two sensors (`alert_sensors`), running by default. The impact
comes from the webserver's GraphQL API (DAGSTER_WEBSERVER_URL), since a location cannot see
the assets of the others; when the webserver is unreachable the alert says so and goes out.
"""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime

import dagster as dg

from .lineage import GraphUnavailable, fetch_graph, impact
from .settings import Settings, load_settings

# Set by the instance on a failed run, "true" when run_retries will launch a retry of it.
WILL_RETRY_TAG = "dagster/will_retry"


def deliver(alert: dict, settings: Settings | None = None) -> str:
    """Send one alert; return where it went (the webhook URL or the log file)."""
    settings = settings or load_settings()
    alert = {"sent_at": datetime.now(UTC).isoformat(timespec="seconds"), **alert}
    if settings.alert_webhook_url:
        request = urllib.request.Request(
            settings.alert_webhook_url,
            data=json.dumps(alert).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                return settings.alert_webhook_url
        except OSError as exc:
            alert["delivery_error"] = f"{settings.alert_webhook_url}: {exc}"
    settings.alert_log.parent.mkdir(parents=True, exist_ok=True)
    with open(settings.alert_log, "a") as log:
        log.write(json.dumps(alert) + "\n")
    return str(settings.alert_log)


def impact_of(keys: list[str], settings: Settings) -> dict:
    """The impact report of each key (see lineage.impact), or why it is unavailable."""
    try:
        graph = fetch_graph(settings.webserver_url)
    except GraphUnavailable as exc:
        return {"unavailable": str(exc)}
    reports = {}
    for key in keys:
        try:
            reports[key] = impact(graph, key)
        except KeyError as exc:
            reports[key] = {"summary": str(exc.args[0])}
    return reports


def _text(headline: str, reports: dict) -> str:
    if "unavailable" in reports:
        return f"{headline}\nimpact unavailable: {reports['unavailable']}"
    return "\n".join([headline, *(r["summary"] for r in reports.values())])


def run_failures(instance: dg.DagsterInstance, run_id: str) -> tuple[list[str], list[str]]:
    """(assets planned but not materialized, checks that failed) in a run."""
    events = instance.all_logs(
        run_id,
        of_type={
            dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
            dg.DagsterEventType.ASSET_MATERIALIZATION,
            dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        },
    )
    planned, done, checks = [], set(), []
    for entry in events:
        event = entry.dagster_event
        if event is None:
            continue
        # A check's evaluation names its asset in its data: its event's asset_key is None.
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED and event.asset_key:
            planned.append(event.asset_key.to_user_string())
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and event.asset_key:
            done.add(event.asset_key.to_user_string())
        elif isinstance(evaluation := event.event_specific_data, dg.AssetCheckEvaluation) and not evaluation.passed:
            checks.append(
                f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name} ({evaluation.severity.value.lower()})"
            )
    return [k for k in dict.fromkeys(planned) if k not in done], checks


def step_errors(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Each failed step of a run with its error as the user's code raised it (Dagster wraps
    it; its own causes stay out), e.g. a schema drift naming the columns' readers downstream."""
    errors = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
            error = error.cause
        if event and error is not None:
            message = error.message.strip()
            if error.cls_name == "Failure":  # dg.Failure: its description is the asset's own words
                message = re.sub(r"^[\w.]*Failure: ", "", message)
            errors.append(f"{event.step_key}: {message}")
    return errors


def alert_sensors(location: str) -> list[dg.SensorDefinition]:
    """The run-failure and freshness alert sensors of a location, running by default."""

    @dg.run_failure_sensor(
        name=f"{location}_run_failure_alert",
        minimum_interval_seconds=10,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts on failed runs of this location, with their impact.",
    )
    def run_failure_alert(context: dg.RunFailureSensorContext) -> None:
        settings = load_settings()
        run = context.dagster_run
        if run.tags.get(WILL_RETRY_TAG) == "true":
            # The instance retries it (run_retries in deploy/dagster.yaml): alert on the retry.
            context.log.info(f"run {run.run_id} failed and will be retried: no alert")
            return
        assets, checks = run_failures(context.instance, run.run_id)
        reports = impact_of(assets, settings)
        what = [f"{', '.join(assets)} not materialized"] if assets else []
        what += [f"failed checks: {', '.join(checks)}"] if checks else []
        headline = f"[{location}] run {run.run_id} failed: {'; '.join(what) or context.failure_event.message}"
        errors = step_errors(context.instance, run.run_id)
        where = deliver(
            {
                "kind": "run_failure",
                "location": location,
                "run_id": run.run_id,
                "job": run.job_name,
                "failed_assets": assets,
                "failed_checks": checks,
                "error": context.failure_event.message,
                "step_errors": errors,
                "impact": reports,
                "text": "\n".join([_text(headline, reports), *errors]),
            },
            settings,
        )
        context.log.info(f"alert sent to {where}")

    @dg.sensor(
        name=f"{location}_freshness_alert",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts when an asset of this location turns stale (freshness FAIL).",
    )
    def freshness_alert(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        settings = load_settings()
        assert context.repository_def is not None  # a sensor of a loaded location has its repository
        keys = list(context.repository_def.asset_graph.get_all_asset_keys())
        states = {
            k.to_user_string(): r.freshness_state.value
            for k, r in context.instance.get_freshness_state_records(keys).items()
        }
        seen = json.loads(context.cursor or "{}")
        newly_failed = sorted(k for k, s in states.items() if s == "FAIL" and seen.get(k) != "FAIL")
        if newly_failed:
            reports = impact_of(newly_failed, settings)
            headline = f"[{location}] freshness failed: {', '.join(newly_failed)}"
            deliver(
                {
                    "kind": "freshness",
                    "location": location,
                    "stale_assets": newly_failed,
                    "impact": reports,
                    "text": _text(headline, reports),
                },
                settings,
            )
        context.update_cursor(json.dumps(states))
        return dg.SkipReason(f"alerted on {len(newly_failed)} stale assets" if newly_failed else "no asset newly stale")

    return [run_failure_alert, freshness_alert]
