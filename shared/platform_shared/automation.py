"""How assets update by themselves, decided once for every location.

Raw tables run on the catalog's crons (ingestion schedules). Everything downstream, in
any location, updates when its upstream updated *and* the upstream's blocking checks
passed: ``eager()`` alone ignores blocking checks and would carry bad data on.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from .keys import RECONCILE_CHECK


def on_upstream_update(days: int = 1) -> dg.AutomationCondition:
    """Run after any upstream asset updated, never past a failed blocking check. A daily
    partitioned asset rebuilds its newest ``days`` partitions, today's and those before it
    (rows of past days still change: a session updated after midnight); ``eager()`` alone
    rebuilds only the newest. A daily dependency's missing partitions hold it back only
    within the same newest ``days`` days; an unpartitioned or dynamic-partitioned one's
    (a backtest fold) as in ``eager()``."""
    window = dg.AutomationCondition.in_latest_time_window(timedelta(days=days) if days > 1 else None)
    # eager() (Dagster 1.13), written out for one change: it waits while *any* partition of
    # a dependency is missing, so an asset fed by a daily one (every day since its start)
    # would wait for a backfill of the whole history. Only the dependency's partitions in
    # the window must exist (``in_latest_time_window`` read on the dependency: its newest
    # days; every partition of an unpartitioned or dynamic-partitioned one).
    missing = dg.AutomationCondition.missing() & ~dg.AutomationCondition.will_be_requested() & window
    updated = dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()
    eager = (
        window
        & updated.since_last_handled()
        & ~dg.AutomationCondition.any_deps_match(missing).with_label("deps missing in the window")
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("eager, deps' newest day" if days == 1 else f"eager, newest {days} days (deps' too)")
    return eager & dg.AutomationCondition.all_deps_blocking_checks_passed()


def on_cron(cron: str) -> dg.AutomationCondition:
    """Run once per cron tick, after every upstream asset updated since the tick and
    passed its blocking checks (for example, a daily retraining)."""
    return dg.AutomationCondition.on_cron(cron) & dg.AutomationCondition.all_deps_blocking_checks_passed()


def automation_sensor(location: str) -> dg.AutomationConditionSensorDefinition:
    """The location's automation sensor, running by default (sensors start stopped)."""
    return dg.AutomationConditionSensorDefinition(
        f"{location}_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=15,
        description="Evaluates the automation conditions of this location's assets.",
    )


def plain_run_job(defs: dg.Definitions, assets: list[dg.AssetKey] | None = None) -> dg.JobDefinition:
    """The assets of ``defs`` (all, or ``assets``) with their checks, less the
    reconciliation checks: a plain run (``make run``, ``make ingest``, the tests). The
    implicit job would also compare every row of every raw table with its source; those
    checks run on their own schedule. (``execute_in_process(asset_selection=...)`` adds
    back every check of the assets it selects: select them here instead.)"""
    chosen = dg.AssetSelection.assets(*assets) if assets else dg.AssetSelection.all()
    reconcile = [k for k in defs.resolve_asset_graph().asset_check_keys if k.name == RECONCILE_CHECK]
    checks = dg.AssetSelection.checks_for_assets(*assets) if assets else dg.AssetSelection.all_asset_checks()
    selection = chosen.without_checks() | (checks - dg.AssetSelection.checks(*reconcile))
    job = dg.define_asset_job("__platform_run", selection=selection)
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("__platform_run")
