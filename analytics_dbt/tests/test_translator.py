"""The translator alone: keys, groups, owners, kinds, blocking checks; and a spec snapshot."""

import dagster as dg
import pytest

from platform_analytics.translator import _blocking, _group, _key


def test_sources_are_keyed_by_the_shared_raw_scheme():
    assert _key({"resource_type": "source", "name": "orders", "identifier": "orders"}) == dg.AssetKey(["raw", "orders"])
    assert _key({"resource_type": "model", "name": "orders"}) == dg.AssetKey(["orders"])


def test_groups_follow_the_layer_folder():
    assert _group({"path": "staging/app/stg_app__orders.sql"}) == "staging"
    assert _group({"path": "marts/finance/orders.sql"}) == "marts"


@pytest.mark.parametrize(("severity", "blocking"), [("error", True), ("ERROR", True), ("warn", False)])
def test_error_severity_tests_block(severity, blocking):
    assert _blocking({"config": {"severity": severity}}) is blocking


def _specs() -> list[dict]:
    from platform_analytics.definitions import defs

    d = defs()
    graph = d.resolve_asset_graph()
    checks = [c for a in d.assets if isinstance(a, dg.AssetsDefinition) for c in a.check_specs]
    rows = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        if not (node.is_materializable or "dashboard" in node.kinds):
            continue
        rows.append(
            {
                "key": key.to_user_string(),
                "deps": sorted(p.to_user_string() for p in node.parent_keys),
                "owners": node.owners,
                "kinds": sorted(node.kinds),
                "group": node.group_name,
                "checks": sorted(f"{c.name} blocking={c.blocking}" for c in checks if c.asset_key == key),
            }
        )
    return rows


def test_asset_specs_snapshot(snapshot):
    """Keys, deps, owners, kinds and checks of the location; review the diff with
    `pytest --snapshot-update` when a change is meant."""
    assert _specs() == snapshot


def test_location_specs_snapshot(snapshot):
    """The whole location as data (assets with their dependencies, automation conditions
    and freshness policies; checks; schedules; sensors; jobs; resources; executor): the
    proof that reshaping the location left its graph as it was."""
    from platform_analytics.definitions import defs
    from platform_shared.specs import location_specs

    assert location_specs(defs()) == snapshot


def _manifest() -> dict:
    import json

    from platform_analytics.project import analytics_project

    return json.loads(analytics_project.manifest_path.read_text())


def test_dashboards_carry_the_mart_columns_they_show_as_column_lineage():
    from platform_analytics.assets import dashboard_specs
    from platform_analytics.translator import AnalyticsTranslator

    specs = {s.key.to_user_string(): s for s in dashboard_specs(_manifest(), AnalyticsTranslator())}
    lineage = specs["dashboard/customer_value_dashboard"].metadata["dagster/column_lineage"]
    assert lineage.deps_by_column["customers.country_code"] == [
        dg.TableColumnDep(asset_key=dg.AssetKey(["customers"]), column_name="country_code")
    ]
    assert all(s.metadata["dagster/column_lineage"].deps_by_column for s in specs.values())


@pytest.mark.parametrize(
    ("model", "column", "error"),
    [
        ("customers", "country", "customers.country is not a column of the mart customers (its columns: customer_id"),
        ("orders", "order_id", "reads 'orders', which is not in its depends_on (customer_cohorts, customers)"),
    ],
)
def test_a_dashboard_column_that_its_mart_lacks_names_dashboard_model_and_column(model, column, error):
    from platform_analytics.assets import dashboard_specs
    from platform_analytics.translator import AnalyticsTranslator

    manifest = _manifest()
    exposure = manifest["exposures"]["exposure.analytics.customer_value_dashboard"]
    exposure["config"]["meta"]["columns"] = {model: [column]}
    with pytest.raises(dg.DagsterInvalidDefinitionError) as raised:
        dashboard_specs(manifest, AnalyticsTranslator())
    assert str(raised.value).startswith(
        "dashboard customer_value_dashboard (models/marts/_marts__models.yml, config.meta.columns): "
    )
    assert error in str(raised.value)
