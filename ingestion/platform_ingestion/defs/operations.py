"""Instance housekeeping owned by the platform team: purge old runs and their event logs.

Dagster's `retention` setting covers schedule and sensor ticks only; runs and event logs
grow until someone deletes them, so this job does, daily.
"""

# No `from __future__ import annotations`: Dagster reads the config class from the annotation.
from datetime import UTC, datetime, timedelta

import dagster as dg

from platform_shared import load_settings

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


class PurgeConfig(dg.Config):
    # None: the PURGE_RUNS_AFTER_DAYS setting (default 30).
    older_than_days: float | None = None


@dg.op
def purge_runs(context: dg.OpExecutionContext, config: PurgeConfig) -> int:
    """Delete finished runs (with their event logs) created more than N days ago."""
    days = config.older_than_days if config.older_than_days is not None else load_settings().purge_runs_after_days
    cutoff = datetime.now(UTC) - timedelta(days=days)
    records = context.instance.get_run_records(filters=dg.RunsFilter(statuses=FINISHED, created_before=cutoff))
    for record in records:
        context.instance.delete_run(record.dagster_run.run_id)
    context.log.info(f"deleted {len(records)} runs created before {cutoff.isoformat(timespec='seconds')}")
    context.add_output_metadata({"runs_deleted": len(records), "cutoff": cutoff.isoformat()})
    return len(records)


@dg.job(description="Delete finished runs and their event logs older than PURGE_RUNS_AFTER_DAYS.")
def purge_old_runs():
    purge_runs()


purge_schedule = dg.ScheduleDefinition(
    job=purge_old_runs, cron_schedule="30 3 * * *", default_status=dg.DefaultScheduleStatus.RUNNING
)
