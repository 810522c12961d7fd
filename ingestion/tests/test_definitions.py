"""A snapshot of the location's asset specs, from the committed catalog."""

from platform_ingestion.definitions import defs


def _specs() -> list[dict]:
    d = defs()
    graph = d.resolve_asset_graph()
    return [
        {
            "key": key.to_user_string(),
            "owners": graph.get(key).owners,
            "kinds": sorted(graph.get(key).kinds),
            "group": graph.get(key).group_name,
            "pools": sorted(graph.get(key).pools),
            "tags": dict(graph.get(key).tags),
            "metadata": {k: str(v) for k, v in graph.get(key).metadata.items() if not k.startswith("dagster/")},
            "checks": sorted(c.name for c in graph.asset_check_keys if c.asset_key == key),
        }
        for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
        if graph.get(key).is_materializable
    ]


def test_asset_specs_snapshot(snapshot):
    """Keys, owners, kinds, pools, tags and catalog metadata of every raw table; review the
    diff with `pytest --snapshot-update` when a change is meant."""
    assert _specs() == snapshot


def test_loads_and_reconciliations_run_on_their_own_schedules():
    # An hourly load never compares every row (its job has no reconciliation step), the
    # daily reconciliation loads nothing else.
    d = defs()
    steps = {}
    for name in ("raw_tables", "reconcile_raw_tables"):
        schedule = d.resolve_schedule_def(name)
        steps[name] = (schedule.cron_schedule, sorted(n.name for n in d.resolve_job_def(schedule.job_name).nodes))
    tables = ["customers", "order_items", "orders", "payments", "products", "web_sessions"]
    assert steps == {
        "raw_tables": ("0 * * * *", [f"raw__{t}" for t in tables]),
        "reconcile_raw_tables": ("30 3 * * *", [f"raw__{t}_matches_source" for t in tables]),
    }


def test_location_specs_snapshot(snapshot):
    """The whole location as data (assets with their dependencies, automation conditions
    and freshness policies; checks; schedules; sensors; jobs; resources; executor): the
    proof that reshaping the location left its graph as it was."""
    from platform_ingestion.definitions import defs
    from platform_shared.specs import location_specs

    assert location_specs(defs()) == snapshot
