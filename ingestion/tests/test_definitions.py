"""A snapshot of the location's asset specs, from the committed catalog."""

from platform_ingestion.definitions import defs


def _specs() -> list[dict]:
    d = defs()
    graph = d.resolve_asset_graph()
    return [{
        "key": key.to_user_string(),
        "owners": graph.get(key).owners,
        "kinds": sorted(graph.get(key).kinds),
        "group": graph.get(key).group_name,
        "pools": sorted(graph.get(key).pools),
        "tags": dict(graph.get(key).tags),
        "metadata": {k: str(v) for k, v in graph.get(key).metadata.items() if not k.startswith("dagster/")},
    } for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
        if graph.get(key).is_materializable]


def test_asset_specs_snapshot(snapshot):
    """Keys, owners, kinds, pools, tags and catalog metadata of every raw table; review the
    diff with `pytest --snapshot-update` when a change is meant."""
    assert _specs() == snapshot
