"""The global asset graph, read from the real webserver's GraphQL API over workspace.yaml."""

import pytest

from platform_shared import load_catalog, load_settings, raw_asset_key

ASSET_NODES = """
{ assetNodes {
    assetKey { path }
    dependencyKeys { path }
    isMaterializable
    isExecutable
    kinds
    owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    repository { location { name } }
} }
"""


@pytest.fixture(scope="module")
def graph(webserver):
    nodes = webserver.graphql(ASSET_NODES)["assetNodes"]
    return {"/".join(n["assetKey"]["path"]): n for n in nodes}


def _downstream(graph, key: str) -> set[str]:
    found, frontier = set(), {key}
    while frontier:
        nxt = {k for k, n in graph.items() for d in n["dependencyKeys"] if "/".join(d["path"]) in frontier}
        frontier = nxt - found
        found |= nxt
    return found


def test_the_workspace_loads_all_three_locations(graph):
    locations = {n["repository"]["location"]["name"] for n in graph.values()}
    assert locations == {"ingestion", "analytics_dbt", "ml_features"}


def test_every_raw_table_is_defined_by_ingestion_and_feeds_analytics(graph):
    for table in load_catalog(load_settings().catalog_path).tables:
        key = raw_asset_key(table.warehouse_name).to_user_string()
        assert graph[key]["repository"]["location"]["name"] == "ingestion"
        downstream_locations = {graph[k]["repository"]["location"]["name"] for k in _downstream(graph, key)}
        assert "analytics_dbt" in downstream_locations, key


def test_raw_orders_feeds_dbt_models_a_dashboard_and_ml_assets(graph):
    hit = _downstream(graph, "raw/orders")
    by_location = {}
    for key in hit:
        by_location.setdefault(graph[key]["repository"]["location"]["name"], set()).add(key)
    assert {"stg_app__orders", "orders"} <= by_location["analytics_dbt"]
    assert any("dashboard" in graph[k]["kinds"] for k in by_location["analytics_dbt"])
    assert {"features/customer_features", "ml/churn_model"} <= by_location["ml_features"]


def test_no_asset_depends_on_a_key_that_no_location_defines(graph):
    defined = {k for k, n in graph.items() if n["isMaterializable"] or "dashboard" in n["kinds"]}
    dangling = {
        (k, "/".join(d["path"]))
        for k, n in graph.items()
        for d in n["dependencyKeys"]
        if "/".join(d["path"]) not in defined
    }
    assert dangling == set()


def test_every_asset_has_a_team_owner(graph):
    unowned = [k for k, n in graph.items() if not any(o.get("team") for o in n["owners"])]
    assert unowned == []
