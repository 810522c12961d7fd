"""How assets update by themselves, decided once for every location.

Raw tables run on the catalog's crons (ingestion schedules). Everything downstream, in
any location, updates when its upstream updated *and* the upstream's blocking checks
passed: ``eager()`` alone ignores blocking checks and would carry bad data on.
"""

from __future__ import annotations

import dagster as dg


def on_upstream_update() -> dg.AutomationCondition:
    """Run after any upstream asset updated, never past a failed blocking check."""
    return dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


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
