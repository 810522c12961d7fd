"""Automation across the three locations, evaluated in process over their definitions
together: a raw table's update requests its dbt dependents, a failed blocking check
requests nothing past it. The dbt model runs for real, so its checks are real."""

import shutil
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from platform_shared import alerts
from platform_shared import settings as s
from platform_shared.automation import on_cron, on_upstream_update, plain_run_job
from tools import run_all

ORDERS = dg.AssetKey(["raw", "orders"])
STAGING = dg.AssetKey(["stg_app__orders"])
MARTS = {"orders", "daily_revenue", "customers", "int_order_items_joined"}


def _merged(locations: dict[str, dg.Definitions]) -> dg.Definitions:
    """The three locations' assets and checks as one graph. Each location brings its own
    `warehouse` resource (the same file): one of each key is kept. Sensors stay out: each
    location's targets all of its own assets."""
    resources = {k: v for d in locations.values() for k, v in (d.resources or {}).items()}
    return dg.Definitions.merge(
        *[dg.Definitions(assets=d.assets, asset_checks=d.asset_checks) for d in locations.values()],
        dg.Definitions(resources=resources),
    )


@pytest.fixture
def world(platform, tmp_path, monkeypatch):
    """A private warehouse, the merged definitions on it, and an instance where every
    asset has materialized once and a first automation tick was evaluated."""
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(platform.warehouse, copy)
    monkeypatch.setenv(s.WAREHOUSE_PATH, str(copy))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt_target"))
    defs = _merged({loc: run_all.load_location(loc) for loc in run_all.LOCATIONS})
    with dg.DagsterInstance.ephemeral() as instance:
        graph = defs.resolve_asset_graph()
        for key in graph.materializable_asset_keys:
            instance.report_runless_asset_event(dg.AssetMaterialization(key))
        for check in graph.asset_check_keys:
            instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(asset_key=check.asset_key, check_name=check.name, passed=True)
            )
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        yield copy, defs, instance, cursor


class Requested(set):
    """The asset keys a tick requested; ``partitions``: the partition keys of the partitioned ones."""

    partitions: dict[dg.AssetKey, set[str]]


def _tick(defs, instance, cursor) -> tuple[Requested, object]:
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    graph = defs.resolve_asset_graph()
    requested = Requested(k for k in graph.materializable_asset_keys if result.get_num_requested(k))
    requested.partitions = {k: result.get_requested_partitions(k) for k in requested if graph.get(k).partitions_def}
    return requested, result.cursor


def _run(defs, instance, keys) -> list[dg.ExecuteInProcessResult]:
    """Run the requested assets as the automation sensor's backfill would (a tick that
    requests several partitions of an asset emits one): the unpartitioned ones, then,
    unless that failed, the partitioned ones over their requested days in one run (a
    failed parent stops its children)."""
    partitions = getattr(keys, "partitions", {})
    runs = []
    if unpartitioned := sorted(k for k in keys if k not in partitions):
        runs.append(plain_run_job(defs, unpartitioned).execute_in_process(instance=instance, raise_on_error=False))
    if partitions and all(r.success for r in runs):
        days = sorted({d for ds in partitions.values() for d in ds})
        tags = {run_all.RANGE_START: days[0], run_all.RANGE_END: days[-1]}
        job = plain_run_job(defs, sorted(partitions))
        runs.append(job.execute_in_process(instance=instance, raise_on_error=False, tags=tags))
    return runs


def _dbt_downstream_of_orders(defs) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return dg.AssetSelection.assets(STAGING).downstream().resolve(graph) & graph.materializable_asset_keys


def _materialized_in(result, keys) -> set[dg.AssetKey]:
    return {m.asset_key for m in result.get_asset_materialization_events()} & keys


def test_a_raw_table_update_requests_its_dbt_dependents_across_locations(world):
    _, defs, instance, cursor = world
    assert _tick(defs, instance, cursor)[0] == set()
    instance.report_runless_asset_event(dg.AssetMaterialization(ORDERS))
    requested, cursor = _tick(defs, instance, cursor)
    # One run: the staging model of raw/orders (in another location) and everything
    # downstream of it; nothing fed by other raw tables only, and not the ML features,
    # which retrain on their daily cron. The daily marts follow in the next tick: a
    # partitioned asset is not run with its unpartitioned parents.
    expected = _dbt_downstream_of_orders(defs)
    daily = {k for k in expected if defs.resolve_asset_graph().get(k).partitions_def}
    assert {k.to_user_string() for k in daily} == {"daily_revenue"}
    assert requested == expected - daily
    assert MARTS - {"daily_revenue"} <= {k.to_user_string() for k in requested}
    assert not {"stg_app__products", "stg_app__customers", "ml/customer_features"} & {
        k.to_user_string() for k in requested
    }
    [result] = _run(defs, instance, requested)
    assert result.success
    assert _materialized_in(result, requested) == requested
    # Then the daily mart: its newest three days (today's and two before: late rows).
    requested, cursor = _tick(defs, instance, cursor)
    assert requested == daily
    today = datetime.now(UTC).date()
    days = {str(today - timedelta(days=n)) for n in range(3)}
    assert requested.partitions == {dg.AssetKey(["daily_revenue"]): days}
    [result] = _run(defs, instance, requested)
    assert result.success
    assert {e.materialization.partition for e in result.get_asset_materialization_events()} == days
    assert _tick(defs, instance, cursor)[0] == set()


def test_a_failed_blocking_check_stops_bad_data_before_the_marts(world):
    warehouse, defs, instance, cursor = world
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("insert into raw.orders select * from raw.orders order by order_id limit 1")
    instance.report_runless_asset_event(dg.AssetMaterialization(ORDERS))
    requested, cursor = _tick(defs, instance, cursor)
    daily = {dg.AssetKey(["daily_revenue"])}  # requested once its parents updated: they will not
    assert requested == _dbt_downstream_of_orders(defs) - daily
    [result] = _run(defs, instance, requested)  # the daily marts' run never starts
    failed = {c.check_name for c in result.get_asset_check_evaluations() if not c.passed}
    assert "unique_stg_app__orders_order_id" in failed
    # What the run-failure alert reports: the assets not built and the failed check.
    not_built, failed_checks = alerts.run_failures(instance, result.run_id)
    assert set(not_built) == {k.to_user_string() for k in requested - {STAGING}}
    assert "stg_app__orders:unique_stg_app__orders_order_id (error)" in failed_checks
    # The staging view was rebuilt (that is where the test ran); nothing past it was.
    assert _materialized_in(result, requested) == {STAGING}
    requested, cursor = _tick(defs, instance, cursor)  # the daemon ticks every 15 s
    assert requested == set()
    # Someone reruns the staging model alone: the check fails again. Plain eager() would
    # now request the marts (their dependency updated in a run that did not target
    # them); the blocking-checks condition keeps the bad data where it is.
    [rerun] = _run(defs, instance, {STAGING})
    assert not rerun.success and _materialized_in(rerun, {STAGING}) == {STAGING}
    assert _tick(defs, instance, cursor)[0] == set()


def test_a_new_backtest_fold_is_evaluated_alone_and_a_new_model_reevaluates_every_fold(world):
    _, defs, instance, cursor = world
    model, evaluation, champion = (
        dg.AssetKey(["ml", k]) for k in ("churn_model", "churn_model_evaluation", "churn_model_champion")
    )
    # The feature run adds the months whose churn window just ended: those folds alone run.
    instance.add_dynamic_partitions("churn_backtest_cutoffs", ["2026-04-01", "2026-05-01"])
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert result.get_requested_partitions(evaluation) == {"2026-04-01", "2026-05-01"}
    assert result.get_num_requested(champion) == 0
    # One fold done: the evaluation updated, but the champion waits for the missing fold.
    instance.report_runless_asset_event(dg.AssetMaterialization(evaluation, partition="2026-04-01"))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_num_requested(champion) == 0
    instance.report_runless_asset_event(dg.AssetMaterialization(evaluation, partition="2026-05-01"))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_num_requested(evaluation) == 0 and result.get_num_requested(champion) == 1
    instance.report_runless_asset_event(dg.AssetMaterialization(champion))
    # A new model version (the daily retraining): every fold is evaluated again.
    instance.report_runless_asset_event(dg.AssetMaterialization(model))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_requested_partitions(evaluation) == {"2026-04-01", "2026-05-01"}


def test_an_unpartitioned_asset_of_another_location_follows_a_daily_mart(world):
    """An ML-location asset that reads a daily mart (none does yet: this one stands for
    it, automated as the platform's are): it runs after the mart's newest days were
    rebuilt, although most of the mart's past partitions were never materialized (`make
    run` builds today's; the history is one backfill away); it waits while today's
    partition of the mart is missing, and runs once it is built."""
    _, defs, instance, _ = world
    revenue, watch_key = dg.AssetKey(["daily_revenue"]), dg.AssetKey(["ml", "revenue_watch"])

    @dg.asset(key=watch_key, deps=[revenue], automation_condition=on_upstream_update())
    def revenue_watch() -> None: ...

    graph_defs = dg.Definitions.merge(defs, dg.Definitions(assets=[revenue_watch]))
    instance.report_runless_asset_event(dg.AssetMaterialization(watch_key))
    cursor = dg.evaluate_automation_conditions(defs=graph_defs, instance=instance).cursor
    today = datetime.now(UTC).date()
    for n in (2, 1):  # the mart's two days before today rebuilt; today's not yet
        instance.report_runless_asset_event(dg.AssetMaterialization(revenue, partition=str(today - timedelta(days=n))))
    requested, cursor = _tick(graph_defs, instance, cursor)
    assert watch_key not in requested
    instance.report_runless_asset_event(dg.AssetMaterialization(revenue, partition=str(today)))
    requested, cursor = _tick(graph_defs, instance, cursor)
    assert watch_key in requested
    instance.report_runless_asset_event(dg.AssetMaterialization(watch_key))
    assert watch_key not in _tick(graph_defs, instance, cursor)[0]


def test_a_daily_asset_rebuilds_a_day_only_once_its_daily_parent_has_that_day():
    """A daily mart (``on_upstream_update(days=3)``) over a daily parent (as session_funnel
    reads sessions): after the parent rebuilt today and two days ago but not yesterday,
    the mart rebuilds today and two days ago, not yesterday, which waits for its parent."""
    days = dg.DailyPartitionsDefinition(start_date="2024-07-01", end_offset=1)

    @dg.asset(partitions_def=days)
    def parent() -> None: ...

    @dg.asset(partitions_def=days, deps=[parent], automation_condition=on_upstream_update(days=3))
    def child() -> None: ...

    defs = dg.Definitions(assets=[parent, child])
    today = datetime.now(UTC).date()
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        for n in (0, 2):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(parent.key, partition=str(today - timedelta(days=n)))
            )
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert result.get_requested_partitions(child.key) == {str(today), str(today - timedelta(days=2))}


def test_a_cron_asset_fed_by_a_daily_asset_runs_on_its_tick_after_a_newer_day():
    """The ML model's condition (``on_cron``, hourly here so that a tick has just passed)
    over a daily dependency: after the tick, it runs once any day of the dependency
    updated since the tick, its never-built past days notwithstanding; with no update
    since, it waits."""
    days = dg.DailyPartitionsDefinition(start_date="2024-07-01", end_offset=1)

    @dg.asset(partitions_def=days, automation_condition=on_upstream_update(days=3))
    def mart() -> None: ...

    @dg.asset(deps=[mart], automation_condition=on_cron("0 * * * *"))
    def model() -> None: ...

    defs = dg.Definitions(assets=[mart, model])
    if datetime.now(UTC).minute == 59:
        time.sleep(60 - datetime.now(UTC).second + 1)  # the whole test within one hour
    now = datetime.now(UTC)
    before_tick = now.replace(minute=0, second=0, microsecond=0) - timedelta(minutes=1)
    for updated, expected in (((), 0), ((0,), 1), ((2, 1, 0), 1)):
        with dg.DagsterInstance.ephemeral() as instance:
            instance.report_runless_asset_event(dg.AssetMaterialization(model.key))
            cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=before_tick).cursor
            for n in updated:
                day = str(now.date() - timedelta(days=n))
                instance.report_runless_asset_event(dg.AssetMaterialization(mart.key, partition=day))
            result = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, cursor=cursor, evaluation_time=datetime.now(UTC)
            )
            assert result.get_num_requested(model.key) == expected, updated


def test_every_location_runs_its_automation_and_schedules_by_default(platform):
    locations = {loc: run_all.load_location(loc) for loc in run_all.LOCATIONS}
    sensors = {s.name: s.default_status for d in locations.values() for s in d.sensors or []}
    assert sensors["analytics_dbt_automation"] == dg.DefaultSensorStatus.RUNNING
    assert sensors["ml_features_automation"] == dg.DefaultSensorStatus.RUNNING
    schedules = locations["ingestion"].schedules
    assert schedules and all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in schedules)
    specs = {
        a.key.to_user_string(): a
        for d in locations.values()
        for a in d.resolve_all_asset_specs()
        if not a.metadata.get("dagster/auto_created_stub_asset")
    }
    for key in ("raw/orders", "orders", "daily_revenue", "ml/churn_model", "ml/customer_churn_scores"):
        assert specs[key].freshness_policy is not None, key
