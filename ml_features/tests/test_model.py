"""The ML location in its own environment: the model's pure helpers, and a spec snapshot."""

from datetime import datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from platform_ml.features import (
    CHURN_WINDOW_DAYS,
    TRAINING_SNAPSHOTS,
    backtest_cutoffs,
    fold_training_cutoffs,
    snapshot_dates,
)
from platform_ml.model import (
    PSI_ALERT,
    Backtest,
    decide_champion,
    evaluate,
    fold_split,
    labels_look_past,
    precision_at,
    psi,
    reference_profile,
    time_split,
    train,
)

# Snapshots (as_of, label); the newest labelled one, 2026-03-01, is the test cut-off.
SNAPSHOTS = (
    ("2025-11-01", 1.0),
    ("2025-12-01", 0.0),  # its 60-day label window ends 2026-01-30: before the test cut-off
    ("2026-01-15", 1.0),  # its window ends 2026-03-16: it saw orders of the test period
    ("2026-03-01", 1.0),
    ("2026-04-01", None),
)


def _snapshots() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for as_of, label in SNAPSHOTS:
        for customer in range(50):
            rows.append(
                {
                    "customer_id": customer,
                    "as_of": pd.Timestamp(as_of),
                    "churned": label,
                    "recency_days": float(rng.integers(0, 300)),
                    "country": "US" if customer % 3 else "DE",
                }
            )
    return pd.DataFrame(rows)


def test_the_time_split_tests_on_the_newest_labelled_snapshot_only():
    split = time_split(_snapshots())
    assert set(split.test["as_of"]) == {pd.Timestamp("2026-03-01")}
    assert set(split.score["as_of"]) == {pd.Timestamp("2026-04-01")} and split.score["churned"].isna().all()


def test_no_training_label_window_ends_after_the_test_cutoff():
    # Regression: training snapshots 30 days apart from the test one had 60-day labels
    # computed from orders placed after the test cut-off (an optimistic evaluation).
    split = time_split(_snapshots())
    assert set(split.train["as_of"]) == {pd.Timestamp("2025-11-01"), pd.Timestamp("2025-12-01")}
    window = pd.Timedelta(days=CHURN_WINDOW_DAYS)
    assert (split.train["as_of"] + window).max() <= split.test["as_of"].min()


@pytest.mark.parametrize("last_event", [datetime(2026, 6, 30, 12), datetime(2024, 2, 29), datetime(2026, 1, 1)])
def test_the_snapshot_dates_leave_a_whole_label_window_before_the_test_cutoff(last_event):
    today, test, *train = snapshot_dates(last_event)
    assert test == today - timedelta(days=CHURN_WINDOW_DAYS)
    assert len(train) == TRAINING_SNAPSHOTS and train == sorted(train, reverse=True)
    assert max(train) + timedelta(days=CHURN_WINDOW_DAYS) == test  # the newest as late as it may be


def test_precision_at_counts_the_riskiest_share():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.05])
    assert precision_at(y, scores, share=0.3) == 2 / 3
    assert precision_at(y, scores, share=0.1) == 1.0


def test_drift_is_near_zero_on_the_training_data_and_flags_a_shift():
    frame = _snapshots()
    profile = reference_profile(frame, ["recency_days", "country"])
    assert max(psi(profile, frame).values()) < 0.01
    shifted = frame.assign(recency_days=frame["recency_days"] + 250, country="FR")
    drift = psi(profile, shifted)
    assert drift["recency_days"] > PSI_ALERT and drift["country"] > PSI_ALERT


def _specs() -> list[dict]:
    from platform_ml.definitions import defs

    d = defs()
    graph = d.resolve_asset_graph()
    checks = [
        c for a in [*d.assets, *(d.asset_checks or [])] if isinstance(a, dg.AssetsDefinition) for c in a.check_specs
    ]
    return [
        {
            "key": key.to_user_string(),
            "deps": sorted(p.to_user_string() for p in graph.get(key).parent_keys),
            "owners": graph.get(key).owners,
            "kinds": sorted(graph.get(key).kinds),
            "group": graph.get(key).group_name,
            "pools": sorted(graph.get(key).pools),
            "checks": sorted(f"{c.name} blocking={c.blocking}" for c in checks if c.asset_key == key),
        }
        for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
        if graph.get(key).is_materializable
    ]


def test_asset_specs_snapshot(snapshot):
    """Keys, deps, owners, kinds, pools and checks of the location; review the diff with
    `pytest --snapshot-update` when a change is meant."""
    assert _specs() == snapshot


def test_location_specs_snapshot(snapshot):
    """The whole location as data (assets with their dependencies, automation conditions
    and freshness policies; checks; schedules; sensors; jobs; resources; executor): the
    proof that reshaping the location left its graph as it was."""
    from platform_ml.definitions import defs
    from platform_shared.specs import location_specs

    assert location_specs(defs()) == snapshot


@pytest.mark.parametrize(
    ("champion", "champion_auc", "challenger_auc", "promote", "reason"),
    [
        (None, None, 0.70, True, "first model: no champion yet"),
        ("v2", 0.80, 0.80, False, "v2 is already the champion"),
        ("v1", float("nan"), 0.60, True, "the champion v1 cannot be scored on today's features"),
        ("v1", None, 0.60, True, "the champion v1 cannot be scored on today's features"),
        ("v1", 0.80, 0.8001, True, "mean ROC AUC 0.8001 beats the champion's 0.8000"),
        (
            "v1",
            0.80,
            0.80,
            False,
            "challenger v2 mean ROC AUC 0.8000 does not beat champion v1's 0.8000 on the same backtest folds",
        ),
        (
            "v1",
            0.80,
            0.75,
            False,
            "challenger v2 mean ROC AUC 0.7500 does not beat champion v1's 0.8000 on the same backtest folds",
        ),
    ],
)
def test_the_champion_changes_only_for_a_better_challenger(champion, champion_auc, challenger_auc, promote, reason):
    assert decide_champion("v2", challenger_auc, champion, champion_auc) == (promote, reason)


def test_a_champion_whose_configuration_cannot_be_trained_gives_way():
    reason = "cannot be trained on today's features: 'gone_feature'"
    assert decide_champion("v2", 0.80, "v1", float("nan"), not_compared=reason) == (True, f"the champion v1 {reason}")


def _days(cutoffs: list[datetime]) -> list[str]:
    return [c.date().isoformat() for c in cutoffs]


def test_the_backtest_folds_by_hand():
    # The demo's history ends 2026-06-30: its today is 2026-07-01, the newest labelled
    # cut-off 2026-05-02 (60 days before), so the newest fold is the month start before it.
    assert _days(backtest_cutoffs(datetime(2026, 6, 30, 23))) == [
        "2026-02-01",
        "2026-03-01",
        "2026-04-01",
        "2026-05-01",
    ]
    # A day later the folds are the same (stable partitions); a month later one is new.
    assert backtest_cutoffs(datetime(2026, 7, 1, 8)) == backtest_cutoffs(datetime(2026, 6, 30, 23))
    # 2026-06-01 is a fold once its window (06-01 to 07-30) is over: today 07-31.
    assert _days(backtest_cutoffs(datetime(2026, 7, 29, 23), folds=2)) == ["2026-04-01", "2026-05-01"]
    assert _days(backtest_cutoffs(datetime(2026, 7, 30, 1), folds=2)) == ["2026-05-01", "2026-06-01"]
    assert _days(backtest_cutoffs(datetime(2026, 2, 15), folds=2)) == ["2025-11-01", "2025-12-01"]  # over a year end
    # Each fold trains on the six month starts whose label window is over by its cut-off:
    # for 2026-03-01 the newest is 2025-12-01 (its window ends 2026-01-30), not 2026-01-01
    # (its window ends 2026-03-02, after the cut-off).
    assert _days(fold_training_cutoffs(datetime(2026, 3, 1))) == [
        "2025-07-01", "2025-08-01", "2025-09-01", "2025-10-01", "2025-11-01", "2025-12-01",
    ]  # fmt: skip
    assert _days(fold_training_cutoffs(datetime(2026, 5, 1)))[-1] == "2026-03-01"  # window ends 2026-04-30


@pytest.mark.parametrize("last_event", [datetime(2026, 6, 30, 12), datetime(2024, 2, 29), datetime(2026, 1, 1)])
def test_no_backtest_fold_trains_on_a_label_that_looks_past_its_test_cutoff(last_event):
    for test in backtest_cutoffs(last_event):
        training = fold_training_cutoffs(test)
        assert len(training) == TRAINING_SNAPSHOTS and max(training) < test
        assert not labels_look_past([c.isoformat() for c in training], test.isoformat())
        # and the newest is as late as it may be: the next month start would look past.
        later = datetime(max(training).year + max(training).month // 12, max(training).month % 12 + 1, 1)
        assert labels_look_past([later.isoformat()], test.isoformat())
        # The fold's test labels are known by the data's today.
        assert test + timedelta(days=CHURN_WINDOW_DAYS) <= snapshot_dates(last_event)[0]


def test_a_fold_trains_on_its_snapshots_and_tests_on_its_cutoff_only():
    frame = pd.DataFrame(
        {
            "customer_id": [1, 2, 1, 2, 1, 2, 1, 2],
            "as_of": pd.to_datetime(["2025-12-01"] * 2 + ["2026-01-01"] * 2 + ["2026-03-01"] * 2 + ["2026-04-01"] * 2),
            "churned": [True, False, True, None, False, True, None, None],
        }
    )
    train_rows, test_rows = fold_split(frame, datetime(2026, 3, 1), fold_training_cutoffs(datetime(2026, 3, 1)))
    # 2026-01-01 is not a training snapshot of this fold; unlabelled rows never count.
    assert list(zip(train_rows.as_of.dt.date.astype(str), train_rows.customer_id, strict=True)) == [
        ("2025-12-01", 1),
        ("2025-12-01", 2),
    ]
    assert list(test_rows.customer_id) == [1, 2] and set(test_rows.as_of) == {pd.Timestamp("2026-03-01")}


def test_a_backtest_on_a_tiny_dataset_by_hand():
    """Two folds evaluated end to end (split, train, score) on eight customers a month:
    churners are those with recency_days over 30, except in the snapshot 2026-02-01, whose
    label window ends 2026-04-02, after both folds' cut-offs. There the labels are
    reversed and the customers six times over: a split that trained on it would learn the
    reverse and rank every churner last."""
    leaky = pd.Timestamp("2026-02-01")
    recency = [5, 10, 15, 20, 40, 50, 60, 70]
    frame = pd.DataFrame(
        [
            {"customer_id": c, "as_of": m, "recency_days": r, "churned": (r > 30) != (m == leaky)}
            for m in pd.date_range("2025-06-01", "2026-04-01", freq="MS")
            for _ in range(6 if m == leaky else 1)
            for c, r in enumerate(recency)
        ]
    )
    params = {"max_iter": 5, "min_samples_leaf": 1}
    for test, trained_on in [
        (datetime(2026, 3, 1), "2025-07-01 2025-08-01 2025-09-01 2025-10-01 2025-11-01 2025-12-01"),
        (datetime(2026, 4, 1), "2025-08-01 2025-09-01 2025-10-01 2025-11-01 2025-12-01 2026-01-01"),
    ]:
        train_rows, test_rows = fold_split(frame, test, fold_training_cutoffs(test))
        assert " ".join(sorted(train_rows.as_of.dt.date.astype(str).unique())) == trained_on
        assert len(train_rows) == 48 and len(test_rows) == 8
        metrics = evaluate(train(train_rows, ["recency_days"], params), test_rows)
        assert (metrics["roc_auc"], metrics["precision_at_10pct"], metrics["recency_roc_auc"]) == (1.0, 1.0, 1.0)
        assert (metrics["test_rows"], metrics["test_churn_rate"], metrics["prior_brier"]) == (8.0, 0.5, 0.25)
    # The split it must not be: the six month starts before the cut-off (2025-09-01 to
    # 2026-02-01) learn the reversed labels.
    naive = frame[(frame.as_of >= "2025-09-01") & (frame.as_of <= "2026-02-01")]
    assert evaluate(train(naive, ["recency_days"], params), test_rows)["roc_auc"] == 0.0


def _fold(auc: float, brier: float = 0.15, champion: float | None = None) -> dict:
    return {"roc_auc": auc, "brier": brier, "prior_brier": 0.24, "champion_roc_auc": champion}


def test_the_backtest_summary_and_gate_by_hand():
    backtest = Backtest({"2026-03-01": _fold(0.70, champion=0.72), "2026-02-01": _fold(0.80, champion=0.74)})
    assert backtest.mean() == pytest.approx(0.75) and backtest.worst == ("2026-03-01", 0.70)
    assert backtest.trend == pytest.approx(-0.10)  # newest fold minus oldest
    assert backtest.champion_mean() == pytest.approx(0.73)
    assert backtest.beats_baseline(0.1) is None
    weak = Backtest({"2026-02-01": _fold(0.75, brier=0.20), "2026-03-01": _fold(0.52, brier=0.30)})
    assert weak.champion_mean() is None
    # Its mean, 0.635, passes; its worst fold and its mean Brier score do not.
    assert weak.beats_baseline(0.1) == (
        "ROC AUC 0.520 in the fold 2026-03-01 (needs 0.55 in every fold); "
        "mean Brier 0.250, the constant baseline's 0.240"
    )
    # One fold worse calibrated than the baseline is allowed when the mean is better.
    assert Backtest({"a": _fold(0.8, brier=0.26), "b": _fold(0.8, brier=0.15)}).beats_baseline(0.1) is None
    assert "mean ROC AUC 0.530 (needs 0.60)" in Backtest({"a": _fold(0.53)}).beats_baseline(0.1)
    # A fold that could not score the champion makes its mean unknown (NaN): it gives way.
    assert np.isnan(Backtest({"a": _fold(0.7, champion=0.7), "b": _fold(0.7, champion=float("nan"))}).champion_mean())


def test_no_setting_is_read_at_import():
    """The settings are read when the location loads, not when its modules are imported:
    a wrong setting fails the load, naming the variable, and nothing before it."""
    import os
    import subprocess
    import sys

    probe = "import platform_ml.definitions, platform_ml.defs.churn; print('imported')"
    env = {**os.environ, "WAREHOUSE": "nonsense"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "imported", done.stderr[-2000:]
    load = subprocess.run(
        [sys.executable, "-c", "from platform_ml.definitions import defs; defs()"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert load.returncode != 0 and "WAREHOUSE='nonsense': expected duckdb or postgres" in load.stderr
