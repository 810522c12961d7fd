"""What a code location defines, as plain data for a spec snapshot (syrupy): the proof that
reshaping a location (a defs/ folder, a Component) left its graph as it was.

Each location's tests compare ``location_specs(defs())`` with a committed snapshot;
`pytest --snapshot-update` writes it again when a change is meant, and the diff is reviewed.
"""

from __future__ import annotations

import dagster as dg


def location_specs(defs: dg.Definitions) -> dict:
    """Assets (keys, dependencies, owners, kinds, group, pools, tags, metadata, automation
    condition, freshness policy, partitions, backfill policy), asset checks (blocking or not), schedules, sensors, jobs,
    resources and the executor of ``defs``."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        condition = node.automation_condition
        assets[key.to_user_string()] = {
            "materializable": node.is_materializable,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "owners": list(node.owners or ()),
            "kinds": sorted(node.kinds or ()),
            "group": node.group_name,
            "pools": sorted(node.pools or ()),
            "tags": dict(node.tags),
            # Dagster's own entries and dagster-dbt's objects (the manifest, the translator) aside.
            "metadata": {k: str(v) for k, v in node.metadata.items() if not k.startswith(("dagster/", "dagster_dbt/"))},
            "column_lineage": "dagster/column_lineage" in node.metadata,
            "description": node.description,
            "automation_condition": _describe(condition) if condition else None,
            "freshness_policy": str(node.freshness_policy) if node.freshness_policy else None,
            "partitions": str(node.partitions_def) if node.partitions_def else None,
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
            "code_version": node.code_version,
        }
    checks = {
        key.to_user_string(): {
            "blocking": graph.get_check_spec(key).blocking,
            "automation_condition": _describe(graph.get_check_spec(key).automation_condition),
        }
        for key in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string())
    }
    repository = defs.get_repository_def()
    schedules = {
        s.name: {"cron": s.cron_schedule, "job": s.job_name, "status": str(s.default_status)}
        for s in sorted(repository.schedule_defs, key=lambda s: s.name)
    }
    sensors = {
        s.name: {"type": type(s).__name__, "status": str(s.default_status)}
        for s in sorted(repository.sensor_defs, key=lambda s: s.name)
    }
    jobs = {}
    for job in sorted(repository.get_all_jobs(), key=lambda j: j.name):
        if not job.name.startswith("__ASSET_JOB"):  # Dagster's implicit job of all assets
            jobs[job.name] = sorted(n.name for n in job.nodes)
    executor = defs.executor.name if isinstance(defs.executor, dg.ExecutorDefinition) else defs.executor
    return {
        "assets": assets,
        "checks": checks,
        "schedules": schedules,
        "sensors": sensors,
        "jobs": jobs,
        "resources": sorted(defs.resources or {}),
        "executor": str(executor),
    }


def _describe(condition: dg.AutomationCondition | None) -> str | None:
    """A condition as its labelled parts: ``AND(eager, all_deps_blocking_checks_passed)``;
    a part without a label shows its own parts."""
    if condition is None:
        return None
    if condition.get_label():
        return condition.get_label()
    parts = ", ".join(_describe(c) or "" for c in condition.children)
    return f"{condition.name}({parts})" if parts else condition.name
