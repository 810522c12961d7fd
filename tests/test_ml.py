"""The ML location on a warehouse filled by real ingestion: point-in-time features, the
model's lifecycle (champion and challenger), scores, drift and the checks."""

import json
import shutil
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import joblib
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from platform_ml.defs import churn as ml
from platform_ml.features import CHURN_WINDOW_DAYS, FEATURE_COLUMNS, backtest_cutoffs, build_features, last_event_time
from platform_ml.model import Backtest
from platform_ml.resources import ModelStore, build_resources
from platform_shared import load_settings
from platform_shared import settings as s
from platform_shared.demo_data import simulate_day
from tools import backtest, run_all


def _df(path: Path, sql: str, params=None) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(sql, params or []).df()


@pytest.fixture
def copy(platform, tmp_path, monkeypatch) -> Path:
    """A private copy of the session's platform (source, warehouse, dlt state, models)."""
    root = tmp_path / "platform"
    shutil.copytree(platform.root, root, ignore=shutil.ignore_patterns("dagster_home", "*.log"))
    monkeypatch.setenv(s.SOURCE_DATABASE_URL, f"sqlite:///{root}/app.db")
    monkeypatch.setenv(s.WAREHOUSE_PATH, str(root / "warehouse.duckdb"))
    monkeypatch.setenv(s.MODEL_DIR, str(root / "models"))
    return root


def _materialize(*keys: dg.AssetKey, selection=None, run_config=None) -> dg.ExecuteInProcessResult:
    """Run some of the ML location's assets and checks with the current settings (every
    backtest fold of the data, when the evaluation is among them)."""
    defs = ml.churn()
    resources = build_resources(load_settings())
    instance = dg.DagsterInstance.ephemeral()
    tags = {}
    if ml.EVALUATION_KEY in keys:
        with resources["warehouse"].connect(read_only=True) as conn:
            folds = [c.date().isoformat() for c in backtest_cutoffs(last_event_time(conn))]
        instance.add_dynamic_partitions(ml.BACKTEST_FOLDS, folds)
        tags = {run_all.RANGE_START: folds[0], run_all.RANGE_END: folds[-1]}
    return dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=resources,
        selection=selection or dg.AssetSelection.assets(*keys),
        run_config=run_config,
        raise_on_error=False,
        instance=instance,
        tags=tags,
    )


def _test_cutoff(warehouse: Path):
    return _df(warehouse, "select max(as_of) as c from features.customer_features where churned is not null")["c"][0]


def test_features_equal_hand_computed_values_for_chosen_customers(platform):
    wh = platform.warehouse
    cutoff = _test_cutoff(wh)
    features = _df(wh, "select * from features.customer_features where as_of = ?", [cutoff]).set_index("customer_id")
    orders = _df(wh, "select * from raw.orders")
    payments = _df(wh, "select p.*, o.customer_id from raw.payments p join raw.orders o using (order_id)")
    items = _df(wh, "select i.*, o.customer_id from raw.order_items i join raw.orders o using (order_id)")
    sessions = _df(wh, "select * from raw.web_sessions")
    customers = _df(wh, "select * from raw.customers").set_index("customer_id")
    refunders = payments[(payments.status == "refunded") & (payments.updated_at < cutoff)].customer_id
    chosen = {
        int(features.frequency.idxmax()),  # the most frequent buyer
        int(refunders[refunders.isin(features.index)].iloc[0]),  # one with a refund
        int(features.index[0]),
    }
    for cid in chosen:
        mine = orders[(orders.customer_id == cid) & (orders.created_at < cutoff)]
        mine_items = items[(items.customer_id == cid) & (items.created_at < cutoff)]
        window = sessions[
            (sessions.customer_id == cid)
            & (sessions.started_at < cutoff)
            & (sessions.started_at >= cutoff - timedelta(days=30))
        ]
        future = orders[
            (orders.customer_id == cid)
            & (orders.created_at >= cutoff)
            & (orders.created_at < cutoff + timedelta(days=60))
        ]
        refunds = (
            (payments.customer_id == cid) & (payments.status == "refunded") & (payments.updated_at < cutoff)
        ).sum()
        got = features.loc[cid]
        assert got.frequency == len(mine), cid
        assert got.recency_days == (cutoff.normalize() - mine.created_at.max().normalize()).days, cid
        assert got.tenure_days == (cutoff.normalize() - customers.loc[cid].created_at.normalize()).days, cid
        assert got.monetary == pytest.approx(mine.total_cents.sum() / 100), cid
        assert got.items_per_order == pytest.approx(mine_items.quantity.sum() / len(mine)), cid
        assert got.distinct_products == mine_items.product_id.nunique(), cid
        assert got.refund_rate == pytest.approx(min(refunds / len(mine), 1.0)), cid
        assert got.sessions_30d == len(window), cid
        assert got.cart_sessions_30d == window.funnel_step.isin(["cart", "checkout", "purchase"]).sum(), cid
        assert bool(got.churned) == future.empty, cid


def test_no_feature_uses_data_after_the_cutoff_even_when_rows_change_later(copy):
    wh = copy / "warehouse.duckdb"
    source = f"sqlite:///{copy}/app.db"
    before = _df(wh, "select * from features.customer_features where churned is not null")
    cutoffs = [pd.Timestamp(c).to_pydatetime() for c in sorted(before.as_of.unique())]
    owner_before = dict(_df(wh, "select order_id, customer_id from raw.orders").itertuples(index=False))
    # A day of activity after every cut-off: orders change status, new orders arrive, some
    # are hard-deleted; and today a payment made long ago is refunded, customers move country.
    simulate_day(source, seed=11)
    engine = sa.create_engine(source)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "update payments set status = 'refunded', updated_at = (select max(updated_at) from orders) "
                "where payment_id = (select min(payment_id) from payments where status = 'succeeded')"
            )
        )
        conn.execute(
            sa.text(
                "update customers set country = case when country = 'DE' then 'FR' else 'DE' end, "
                "updated_at = (select max(updated_at) from orders) where customer_id <= 5"
            )
        )
    engine.dispose()
    assert run_all.run_location("ingestion", dg.DagsterInstance.ephemeral()).success
    with duckdb.connect(str(wh)) as conn:
        build_features(conn, cutoffs)
    after = _df(wh, "select * from features.customer_features where churned is not null")
    moved = _df(
        wh,
        "select h.customer_id from raw.customers_history h join raw.customers c using (customer_id) "
        "where h.valid_to is not null and h.country != c.country",
    )
    assert len(moved), "the simulated day moved no customer to another country: the test proves nothing"
    # A hard delete really removes the past: customers who lost an order are left out.
    remaining = set(_df(wh, "select order_id from raw.orders").order_id)
    lost = {cid for oid, cid in owner_before.items() if oid not in remaining}
    keep = lambda f: f[~f.customer_id.isin(lost)].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(keep(after), keep(before), check_dtype=False)
    # The moved customers' country is still the one they had at each cut-off.
    assert set(moved.customer_id) & set(keep(before).customer_id)


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    return {
        k: v.value for k, v in instance.get_latest_materialization_event(key).asset_materialization.metadata.items()
    }


def _fold_metadata(instance: dg.DagsterInstance) -> dict[str, dict]:
    """The newest materialization of each partition (backtest fold) of the evaluation."""
    records = instance.fetch_materializations(ml.EVALUATION_KEY, limit=100).records
    out: dict[str, dict] = {}
    for r in records:  # newest first
        out.setdefault(r.partition_key, {k: v.value for k, v in r.asset_materialization.metadata.items()})
    return out


def test_make_backtest_prints_every_fold_beside_the_single_split(platform, tmp_path, capsys):
    store = ModelStore(model_dir=str(platform.root / "models"))
    version = store.newest(ml.MODEL)
    stored = store.backtest(ml.MODEL, version)
    assert backtest.main(["--plot", str(tmp_path / "backtest.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"churn model {version}: walk-forward backtest, 4 folds"
    rows = {line.split()[0]: line.split() for line in lines[2:6]}
    assert sorted(rows) == sorted(stored)
    for fold, row in rows.items():
        assert row[1:4] == [f"{stored[fold]['training_rows']:,}", f"{int(stored[fold]['test_rows']):,}",
                            f"{stored[fold]['roc_auc']:.3f}"]  # fmt: skip
    assert lines[6].startswith(f"mean ROC AUC {np.mean([f['roc_auc'] for f in stored.values()]):.3f} ")
    assert lines[7].startswith("single held-out split (the evaluation before the backtest): test cut-off 2026-")
    assert (tmp_path / "backtest.png").read_bytes()[:4] == b"\x89PNG"


def test_the_backtest_evaluates_every_fold_and_the_champion_is_chosen_on_it(platform):
    # The demo's history ends 2026-06-30: the four month starts whose churn window is over.
    folds = ["2026-02-01", "2026-03-01", "2026-04-01", "2026-05-01"]
    assert platform.instance.get_dynamic_partitions(ml.BACKTEST_FOLDS) == folds
    evaluations = _fold_metadata(platform.instance)
    assert sorted(evaluations) == folds
    store = ModelStore(model_dir=str(platform.root / "models"))
    champion = store.champion(ml.MODEL)
    assert champion == _latest(platform.instance, ml.MODEL_KEY)["version"]
    stored = store.backtest(ml.MODEL, champion)
    assert sorted(stored) == folds
    for fold, evaluation in evaluations.items():
        assert evaluation["version"] == champion
        assert 0.6 <= evaluation["roc_auc"] <= 1.0, fold
        assert evaluation["roc_auc"] == stored[fold]["roc_auc"]
        # Trained on what was known at the cut-off: no label window (60 days after a
        # training snapshot) ends after it.
        newest = pd.Timestamp(max(evaluation["training_cutoffs"]))
        assert newest + timedelta(days=CHURN_WINDOW_DAYS) <= pd.Timestamp(fold), fold
        assert "data:image/png;base64," in evaluation["roc_plot"]
        assert (store.folder(ml.MODEL) / champion / "backtest" / f"{fold}.png").read_bytes()[:4] == b"\x89PNG"
    # Better calibrated than the constant baseline on the mean (at this small scale, one
    # fold's trees are overconfident: its Brier score alone is worse).
    assert np.mean([f["brier"] for f in stored.values()]) < np.mean([f["prior_brier"] for f in stored.values()])
    decision = _latest(platform.instance, ml.CHAMPION_KEY)
    aucs = [stored[f]["roc_auc"] for f in folds]
    assert decision["backtest_folds"] == 4
    assert decision["backtest_mean_roc_auc"] == pytest.approx(np.mean(aucs))
    assert decision["backtest_worst_roc_auc"] == min(aucs) and decision["backtest_trend"] == pytest.approx(
        aucs[-1] - aucs[0]
    )
    assert decision["backtest"].count("\n| 2026-") == 4


def test_the_model_beats_its_baseline_and_its_artifact_loads_back_and_predicts(platform):
    store = ModelStore(model_dir=str(platform.root / "models"))
    champion = store.champion(ml.MODEL)
    folder = store.folder(ml.MODEL) / champion
    info = json.loads((folder / "info.json").read_text())
    assert info["features"] == FEATURE_COLUMNS and info["training_rows"] > 0 and len(info["training_fingerprint"]) == 16
    model = joblib.load(folder / "model.joblib")
    current = _df(platform.warehouse, "select * from features.customer_features where churned is null")
    predicted = model.predict_proba(current[FEATURE_COLUMNS])[:, 1]
    scores = _df(platform.warehouse, "select * from ml.customer_churn_scores order by customer_id")
    assert list(scores.customer_id) == sorted(current.customer_id)
    assert np.allclose(scores.churn_probability, predicted[np.argsort(current.customer_id.to_numpy())])
    assert set(scores.model_version) == {champion}
    assert platform.results["ml_features"].failed_checks == []


def test_a_worse_challenger_does_not_replace_the_champion(copy):
    store = ModelStore(model_dir=str(copy / "models"))
    champion = store.champion(ml.MODEL)
    # Good enough to publish (its backtest passes the gate), worse than the champion's.
    weak = {"ops": {"ml__churn_model": {"config": {"features": ["frequency", "tenure_days", "country"]}}}}
    result = _materialize(ml.MODEL_KEY, ml.EVALUATION_KEY, ml.CHAMPION_KEY, run_config=weak)
    assert result.success, [(c.check_name, c.description) for c in result.get_asset_check_evaluations()]
    decision = next(
        m.materialization.metadata
        for m in result.get_asset_materialization_events()
        if m.materialization.asset_key == ml.CHAMPION_KEY
    )
    assert decision["promoted"].value is False
    assert "does not beat" in decision["reason"].value
    weak_version = store.newest(ml.MODEL)
    assert store.champion(ml.MODEL) == champion != weak_version
    # Drift is measured against the champion's training data and features, not the newer
    # challenger's three.
    assert _materialize(ml.DRIFT_KEY).success
    drift = _df(copy / "warehouse.duckdb", "select distinct model_version, feature from ml.feature_drift")
    assert set(drift.model_version) == {champion}
    champion_features = set(store.read(ml.MODEL, champion, "info.json")["features"])
    assert set(drift.feature) == champion_features != set(store.read(ml.MODEL, weak_version, "info.json")["features"])
    # With the weak one as champion, a better challenger replaces it.
    store.promote(ml.MODEL, weak_version, "test: a weak champion")
    assert _materialize(ml.MODEL_KEY, ml.EVALUATION_KEY, ml.CHAMPION_KEY).success
    assert store.champion(ml.MODEL) == store.newest(ml.MODEL) != weak_version


def test_a_model_that_fails_the_backtest_gate_is_neither_published_nor_promoted(copy):
    """A configuration that knows only the customer's country: its backtest fails the
    blocking gate (here its mean Brier score is worse than the constant baseline's), whose
    message names the version and the reason; the champion asset does not run and the
    champion stays."""
    store = ModelStore(model_dir=str(copy / "models"))
    champion = store.champion(ml.MODEL)
    hopeless = {"ops": {"ml__churn_model": {"config": {"features": ["country"]}}}}
    result = _materialize(ml.MODEL_KEY, ml.EVALUATION_KEY, ml.CHAMPION_KEY, run_config=hopeless)
    assert not result.success
    version = store.newest(ml.MODEL)
    assert version != champion
    [gate] = [c for c in result.get_asset_check_evaluations() if c.check_name == "beats_baseline"]
    backtest = Backtest(store.backtest(ml.MODEL, version))
    assert len(backtest.folds) == gate.metadata["folds"].value >= 2
    assert backtest.mean("brier") >= backtest.mean("prior_brier")  # worse than a constant
    assert not gate.passed
    assert gate.description == f"Model {version}: {backtest.beats_baseline(ml.BASELINE_MARGIN)}: it is not published."
    assert gate.metadata["worst_fold"].value == backtest.worst[0]
    assert gate.metadata["trend_roc_auc"].value == pytest.approx(backtest.trend)
    built = {m.materialization.asset_key for m in result.get_asset_materialization_events()}
    assert ml.CHAMPION_KEY not in built and ml.EVALUATION_KEY in built
    assert store.champion(ml.MODEL) == champion


def test_a_broken_feature_table_fails_its_blocking_check_and_nothing_is_trained(copy):
    wh = copy / "warehouse.duckdb"
    with duckdb.connect(str(wh)) as conn:
        conn.execute("update features.customer_features set refund_rate = 3 where customer_id % 7 = 0")
        conn.execute("update features.customer_features set recency_days = null where customer_id % 11 = 0")
        conn.execute("insert into features.customer_features select * from features.customer_features limit 1")
    versions = ModelStore(model_dir=str(copy / "models")).versions(ml.MODEL)
    result = _materialize(
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(ml.FEATURES_KEY, "features_are_valid"))
        | dg.AssetSelection.assets(ml.MODEL_KEY)
    )
    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    for problem in ("refund rate outside [0, 1]", "recency_days is null", "duplicate (as_of, customer_id)"):
        assert problem in check.description, problem
    assert not result.get_asset_materialization_events()
    assert ModelStore(model_dir=str(copy / "models")).versions(ml.MODEL) == versions


def test_drift_is_measured_against_the_champions_training_data(copy):
    ok = _materialize(ml.DRIFT_KEY)
    assert [c.passed for c in ok.get_asset_check_evaluations()] == [True]
    with duckdb.connect(str(copy / "warehouse.duckdb")) as conn:
        conn.execute("update features.customer_features set monetary = monetary * 20 where churned is null")
    drifted = _materialize(ml.DRIFT_KEY)
    [check] = drifted.get_asset_check_evaluations()
    assert not check.passed and "monetary" in check.description
    assert _df(copy / "warehouse.duckdb", "select psi from ml.feature_drift where feature = 'monetary'").psi[0] > 0.25
