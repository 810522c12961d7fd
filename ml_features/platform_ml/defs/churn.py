"""The ML team's assets: features, the churn model's lifecycle, scores and drift.

    raw tables -> features/customer_features -> ml/churn_model -> ml/churn_model_evaluation
               -> ml/churn_model_champion -> ml/customer_churn_scores, ml/feature_drift

The evaluation is a walk-forward backtest, one partition per monthly test cut-off: each
fold trains the newest version's configuration on what was known at its cut-off and tests
it on the churn that followed. A version becomes the champion only when its backtest
beats the trivial baseline by a margin (a blocking check: a failed one stops the run
before promotion) and the champion's configuration on the same folds. Scores and drift
always use the champion.
"""

import base64
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

import dagster as dg

if TYPE_CHECKING:  # pandas is imported when a step runs (model.py says why)
    import pandas as pd

from platform_shared import (
    ML_TEAM,
    Warehouse,
    load_settings,
    raw_asset_key,
    table_metadata,
    warehouse_pool,
    write_dataframe,
)
from platform_shared.automation import on_cron, on_upstream_update
from platform_shared.column_lineage import COLUMN_LINEAGE
from platform_shared.keys import ML_PREFIX

from ..features import (
    FEATURE_COLUMNS,
    FEATURE_TABLE,
    FEATURES_SCHEMA,
    backtest_cutoffs,
    build_features,
    feature_lineage,
    feature_problems,
    fold_features,
    fold_training_cutoffs,
    has_customer_history,
    last_event_time,
    snapshot_dates,
)
from ..model import (
    DEFAULT_PARAMS,
    PSI_ALERT,
    Backtest,
    backtest_plot,
    decide_champion,
    evaluate,
    fingerprint,
    fold_split,
    predict,
    psi,
    reference_profile,
    roc_plot,
    time_split,
    train,
)
from ..resources import ModelStore

MODEL = "churn_model"
ML_SCHEMA = ML_PREFIX  # the key prefix is the schema
FEATURES_KEY = dg.AssetKey([FEATURES_SCHEMA, FEATURE_TABLE])
MODEL_KEY = dg.AssetKey([ML_SCHEMA, MODEL])
EVALUATION_KEY = dg.AssetKey([ML_SCHEMA, f"{MODEL}_evaluation"])
CHAMPION_KEY = dg.AssetKey([ML_SCHEMA, f"{MODEL}_champion"])
SCORES_KEY = dg.AssetKey([ML_SCHEMA, "customer_churn_scores"])
DRIFT_KEY = dg.AssetKey([ML_SCHEMA, "feature_drift"])
# The raw tables the features read, by their catalog (warehouse) names.
RAW_INPUTS = ("customers", "orders", "order_items", "payments", "web_sessions")
# How far above the trivial baseline (one churn rate for everyone: ROC AUC 0.5) a model's
# ROC AUC must be to be published; its Brier score must also beat that baseline's.
BASELINE_MARGIN = 0.1
GROUP = "ml"
# Features and the model are rebuilt daily (after the 03:00 raw loads); what follows the
# model (evaluation, promotion, scores, drift) runs when its upstream updated.
RETRAIN_CRON = "0 4 * * *"
# The evaluation's partitions: the backtest's test cut-offs (``features.backtest_cutoffs``).
# They come from the data (the demo's history ends in 2026), not from the calendar, so the
# feature asset adds them when it sees a new month whose churn window is over.
BACKTEST_FOLDS = "churn_backtest_cutoffs"
BACKTEST = dg.DynamicPartitionsDefinition(name=BACKTEST_FOLDS)
DAILY_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=24))


# The warehouse's kind (duckdb or postgres), known once the settings are read.
WAREHOUSE_KIND = "warehouse"
# The assets and checks of this module, decorated when the location loads (``churn``): their
# pool and kind depend on the warehouse setting, which no import reads.
_ASSETS: list = []
_CHECKS: list = []


def _asset(key: dg.AssetKey, deps: list, kinds: set[str], description: str, **kwargs):
    """The settings every ML asset shares: group, owner, the warehouse pool, updating when
    upstream updated, and a daily freshness deadline."""

    def register(fn):
        _ASSETS.append((fn, dict(key=key, deps=deps, kinds=kinds, description=description, **kwargs)))
        return fn

    return register


def _check(**kwargs):
    def register(fn):
        _CHECKS.append((fn, kwargs))
        return fn

    return register


@dg.definitions
def churn() -> dg.Definitions:
    settings = load_settings()
    pool = warehouse_pool(settings)
    assets = [
        dg.asset(
            **{
                "group_name": GROUP,
                "owners": [ML_TEAM],
                "pool": pool,
                "automation_condition": on_upstream_update(),
                "freshness_policy": DAILY_FRESHNESS,
                **args,
                "kinds": {settings.warehouse if k == WAREHOUSE_KIND else k for k in args["kinds"]},
            }
        )(fn)
        for fn, args in _ASSETS
    ]
    checks = [dg.asset_check(pool=pool, **args)(fn) for fn, args in _CHECKS]
    return dg.Definitions(assets=assets, asset_checks=checks)


def _read(warehouse: Warehouse, sql: str) -> "pd.DataFrame":
    with warehouse.connect(read_only=True) as conn:
        return conn.execute(sql).df()


def _reads_features(columns: dict[str, list[str]], model_output: str | None = None) -> dict:
    """``dagster/column_lineage``: each output column with the feature columns it reads
    (``model_output`` the model's prediction too, ``model_version`` the champion)."""
    deps = {
        out: [dg.TableColumnDep(FEATURES_KEY, c) for c in cols]
        + ([dg.TableColumnDep(MODEL_KEY, "prediction")] if out == model_output else [])
        + ([dg.TableColumnDep(CHAMPION_KEY, "champion")] if out == "model_version" else [])
        for out, cols in columns.items()
    }
    return {COLUMN_LINEAGE: dg.TableColumnLineage(deps_by_column=deps)}


def _metric_lineage(metrics: dict) -> dg.TableColumnLineage:
    """What each metric compares with the label: the model's prediction (a champion's
    too), the recency baseline's feature, or nothing but the label."""
    label = dg.TableColumnDep(FEATURES_KEY, "churned")
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for metric in metrics:
        if metric.startswith("recency_"):
            deps[metric] = [dg.TableColumnDep(FEATURES_KEY, "recency_days"), label]
        elif metric.startswith(("prior_", "test_")):
            deps[metric] = [label] if metric != "test_rows" else []
        else:
            deps[metric] = [dg.TableColumnDep(MODEL_KEY, "prediction"), label]
    return dg.TableColumnLineage(deps_by_column=deps)


def _features(warehouse: Warehouse) -> "pd.DataFrame":
    return _read(warehouse, f"select * from {FEATURES_SCHEMA}.{FEATURE_TABLE}")


@_asset(
    FEATURES_KEY,
    [raw_asset_key(t) for t in RAW_INPUTS],
    {WAREHOUSE_KIND, "table"},
    "Recency, frequency, spend, basket, refunds, sessions, tenure and country per "
    "customer as of monthly cut-offs (point in time), with the 60-day churn label.",
    automation_condition=on_cron(RETRAIN_CRON),
)
def customer_features(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.connect() as conn:
        last_event = last_event_time(conn)
        cutoffs = snapshot_dates(last_event)
        point_in_time = has_customer_history(conn)
        if not point_in_time:
            context.log.warning(
                "raw.customers has no history (catalog history: scd2): country and "
                "signup channel are today's values, not as of each cut-off."
            )
        sql = build_features(conn, cutoffs)
        meta = table_metadata(conn, FEATURES_SCHEMA, FEATURE_TABLE)
        lineage = feature_lineage(conn, sql)
    folds = [c.date().isoformat() for c in backtest_cutoffs(last_event)]
    new = [f for f in folds if not context.instance.has_dynamic_partition(BACKTEST_FOLDS, f)]
    if new:
        context.instance.add_dynamic_partitions(BACKTEST_FOLDS, new)
        context.log.info(f"New backtest folds (partitions of {EVALUATION_KEY.to_user_string()}): {new}")
    return dg.MaterializeResult(
        metadata={
            **meta,
            **lineage,
            "cutoffs": [c.date().isoformat() for c in cutoffs],
            "backtest_cutoffs": folds,
            "point_in_time_attributes": point_in_time,
        }
    )


@_check(
    asset=FEATURES_KEY,
    blocking=True,
    description="No nulls, values in range, one row per customer and cut-off.",
)
def features_are_valid(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as conn:
        problems = feature_problems(conn)
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(f"{n} row(s): {what}" for what, n in problems.items()) or None,
        metadata={what: dg.MetadataValue.int(n) for what, n in problems.items()},
    )


class TrainConfig(dg.Config):
    """Knobs for an experiment from the launchpad; the defaults are the production model."""

    features: list[str] = FEATURE_COLUMNS
    max_iter: int = DEFAULT_PARAMS["max_iter"]
    learning_rate: float = DEFAULT_PARAMS["learning_rate"]


@_asset(
    MODEL_KEY,
    [FEATURES_KEY],
    {"scikitlearn"},
    "Churn in the next 60 days: gradient-boosted trees trained on earlier snapshots "
    "(time split); each training saves a new versioned joblib artifact.",
    automation_condition=on_cron(RETRAIN_CRON),
)
def churn_model(config: TrainConfig, warehouse: Warehouse, model_store: ModelStore) -> dg.MaterializeResult:
    unknown = sorted(set(config.features) - set(FEATURE_COLUMNS))
    if unknown:
        raise ValueError(f"Unknown feature(s) {unknown}: choose from {FEATURE_COLUMNS}.")
    params = {**DEFAULT_PARAMS, "max_iter": config.max_iter, "learning_rate": config.learning_rate}
    split = time_split(_features(warehouse))
    started = time.perf_counter()
    fitted = train(split.train, config.features, params)
    seconds = time.perf_counter() - started
    info = {
        "training_rows": len(split.train),
        "training_fingerprint": fingerprint(cast("pd.DataFrame", split.train[[*config.features, "churned"]])),
        "training_cutoffs": sorted(split.train["as_of"].dt.date.astype(str).unique().tolist()),
        "features": config.features,
        "params": params,
        "training_seconds": round(seconds, 3),
        "reference_profile": reference_profile(split.train, config.features),
    }
    version = model_store.save(MODEL, fitted, info)
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "artifact": dg.MetadataValue.path(str(model_store.folder(MODEL) / version / "model.joblib")),
            **{k: info[k] for k in ("training_rows", "training_fingerprint", "features", "params")},
            "training_seconds": dg.MetadataValue.float(info["training_seconds"]),
            # The model as one output column, "prediction", computed from its features.
            **_reads_features({"prediction": config.features}),
        }
    )


@_asset(
    EVALUATION_KEY,
    [MODEL_KEY],
    {"scikitlearn"},
    "Walk-forward backtest of the newest model's configuration, one partition per monthly "
    "test cut-off: trained on what was known at the cut-off, tested on the churn that "
    "followed; beside it the trivial and recency baselines and the champion's configuration.",
    partitions_def=BACKTEST,
    # One run evaluates any number of folds: they share one feature query.
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[
        dg.AssetCheckSpec(
            "beats_baseline",
            asset=EVALUATION_KEY,
            blocking=True,
            description=(
                f"Over every fold of the backtest: mean ROC AUC at least {0.5 + BASELINE_MARGIN}, "
                f"{0.5 + BASELINE_MARGIN / 2} in the worst fold, and a mean Brier score below "
                "the constant baseline's."
            ),
        )
    ],
)
def churn_model_evaluation(context: dg.AssetExecutionContext, warehouse: Warehouse, model_store: ModelStore):
    version = model_store.newest(MODEL)
    info = model_store.read(MODEL, version, "info.json")
    champion = model_store.champion(MODEL)
    rival = model_store.read(MODEL, champion, "info.json") if champion and champion != version else None
    tests = {key: datetime.fromisoformat(key) for key in context.partition_keys}
    with warehouse.connect(read_only=True) as conn:
        frame = fold_features(conn, list(tests.values()))
    for key, test_cutoff in tests.items():
        training = fold_training_cutoffs(test_cutoff)
        trained_on = [c.date().isoformat() for c in training]
        train_rows, test_rows = fold_split(frame, test_cutoff, training)
        fitted = train(train_rows, info["features"], info["params"])
        metrics = evaluate(fitted, test_rows)
        not_compared = None  # why the champion's configuration has no ROC AUC in this fold
        if rival:
            try:
                champion_fit = train(train_rows, rival["features"], rival["params"])
                metrics["champion_roc_auc"] = evaluate(champion_fit, test_rows)["roc_auc"]
            except (KeyError, ValueError) as e:  # the champion needs features that are gone
                not_compared = f"cannot be trained on today's features: {e}"
                metrics["champion_roc_auc"] = float("nan")
        png = roc_plot(fitted, test_rows, f"churn model {version}, fold {key}")
        plot = model_store.write(MODEL, version, f"backtest/{key}.png", png)
        model_store.write(
            MODEL,
            version,
            f"backtest/{key}.json",
            {
                **metrics,
                "champion": champion if rival else None,
                "champion_not_compared": not_compared,
                "training_cutoffs": trained_on,
                "training_rows": len(train_rows),
            },
        )
        context.add_asset_metadata(
            {
                **{k: dg.MetadataValue.float(v) for k, v in metrics.items()},
                "training_cutoffs": trained_on,
                "training_rows": len(train_rows),
                "roc_plot": dg.MetadataValue.md(
                    f"![ROC curve](data:image/png;base64,{base64.b64encode(png).decode()})"
                ),
                "roc_plot_path": dg.MetadataValue.path(str(plot)),
                COLUMN_LINEAGE: _metric_lineage(metrics),
            },
            partition_key=key,
        )
    # Why a fold could not score the champion is in that fold's stored JSON; the champion
    # asset gathers the reasons.
    yield dg.MaterializeResult(metadata={"version": version, "champion": str(champion)})
    # The gate covers every fold evaluated for this version, not only this run's.
    backtest = Backtest(model_store.backtest(MODEL, version))
    failed = backtest.beats_baseline(BASELINE_MARGIN)
    yield dg.AssetCheckResult(
        check_name="beats_baseline",
        passed=failed is None,
        metadata={
            "folds": len(backtest.folds),
            "mean_roc_auc": dg.MetadataValue.float(backtest.mean()),
            "worst_roc_auc": dg.MetadataValue.float(backtest.worst[1]),
            "worst_fold": backtest.worst[0],
            "trend_roc_auc": dg.MetadataValue.float(backtest.trend),
            "required_margin": BASELINE_MARGIN,
        },
        description=failed and f"Model {version}: {failed}: it is not published.",
    )


@_asset(
    CHAMPION_KEY,
    [EVALUATION_KEY],
    {"scikitlearn"},
    "The model version that scores customers: the newest one when its configuration beats "
    "the champion's on the same backtest folds (mean ROC AUC), otherwise the champion stays.",
    pool=None,
)
def churn_model_champion(context: dg.AssetExecutionContext, model_store: ModelStore) -> dg.MaterializeResult:
    version = model_store.newest(MODEL)
    backtest = Backtest(model_store.backtest(MODEL, version))
    if not backtest.folds:
        raise FileNotFoundError(f"Model {version} has no backtest: materialize {EVALUATION_KEY.to_user_string()}.")
    champion = model_store.champion(MODEL)
    reasons = {f["champion_not_compared"] for f in backtest.folds.values() if f.get("champion_not_compared")}
    promote, reason = decide_champion(
        version,
        backtest.mean(),
        champion,
        backtest.champion_mean(),
        not_compared="; ".join(sorted(reasons)) or None,
    )
    if promote:
        model_store.promote(MODEL, version, reason)
    context.log.info(f"{'Promoted' if promote else 'Kept the champion'}: {reason}")
    png = backtest_plot(backtest, f"churn model {version}: backtest")
    worst_cutoff, worst = backtest.worst
    champion_mean = backtest.champion_mean()
    return dg.MaterializeResult(
        metadata={
            "champion": model_store.champion(MODEL),
            "challenger": version,
            "promoted": promote,
            "reason": reason,
            "champion_roc_auc": dg.MetadataValue.float(
                backtest.mean() if promote or champion_mean is None else champion_mean
            ),
            "backtest_folds": len(backtest.folds),
            "backtest_mean_roc_auc": dg.MetadataValue.float(backtest.mean()),
            "backtest_worst_fold": worst_cutoff,
            "backtest_worst_roc_auc": dg.MetadataValue.float(worst),
            "backtest_trend": dg.MetadataValue.float(backtest.trend),
            "backtest": dg.MetadataValue.md(_folds_table(backtest)),
            "backtest_plot": dg.MetadataValue.md(
                f"![backtest](data:image/png;base64,{base64.b64encode(png).decode()})"
            ),
            COLUMN_LINEAGE: dg.TableColumnLineage(
                deps_by_column={"champion": [dg.TableColumnDep(EVALUATION_KEY, "roc_auc")]}
            ),
        }
    )


def _folds_table(backtest: Backtest) -> str:
    rows = [
        f"| {c} | {f['training_rows']} | {int(f['test_rows'])} | {f['roc_auc']:.3f} | "
        f"{f['recency_roc_auc']:.3f} | {_auc(f.get('champion_roc_auc'))} | {f['precision_at_10pct']:.3f} |"
        for c, f in sorted(backtest.folds.items())
    ]
    head = "| test cut-off | training rows | test rows | ROC AUC | recency | champion | precision at 10% |"
    return "\n".join([head, "|---|---|---|---|---|---|---|", *rows])


def _auc(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


@_asset(
    SCORES_KEY,
    [FEATURES_KEY, CHAMPION_KEY],
    {WAREHOUSE_KIND, "table"},
    "Churn probability for every current customer from the champion model, for the "
    "analytics team (ml.customer_churn_scores).",
    check_specs=[
        dg.AssetCheckSpec(
            "scores_valid",
            asset=SCORES_KEY,
            blocking=True,
            description="Probabilities in [0, 1], one row per customer.",
        )
    ],
)
def customer_churn_scores(warehouse: Warehouse, model_store: ModelStore):
    champion = model_store.champion(MODEL)
    if champion is None:
        raise FileNotFoundError(f"No champion in {model_store.folder(MODEL)}: materialize the champion first.")
    import pandas as pd

    current = time_split(_features(warehouse)).score
    scores = pd.DataFrame(
        {
            "customer_id": current["customer_id"].to_numpy(),
            "as_of": current["as_of"].to_numpy(),
            "churn_probability": predict(model_store.load(MODEL, champion), current),
            "model_version": champion,
        }
    )
    scores["scored_at"] = pd.Timestamp.now("UTC").tz_localize(None)
    with warehouse.connect() as conn:
        write_dataframe(conn, ML_SCHEMA, "customer_churn_scores", scores)
        (bad, dupes) = conn.execute(
            f"select count(*) filter (where churn_probability is null or churn_probability not between 0 and 1), "
            f"count(*) - count(distinct customer_id) from {ML_SCHEMA}.customer_churn_scores"
        ).fetchall()[0]
        meta = table_metadata(conn, ML_SCHEMA, "customer_churn_scores")
    features = model_store.read(MODEL, champion, "info.json")["features"]
    lineage = _reads_features(
        {
            "customer_id": ["customer_id"],
            "as_of": ["as_of"],
            "churn_probability": features,
            "model_version": [],
            "scored_at": [],
        },
        model_output="churn_probability",
    )
    yield dg.MaterializeResult(
        metadata={
            **meta,
            **lineage,
            "model_version": champion,
            "mean_churn_probability": float(cast(float, scores["churn_probability"].mean())),
        }
    )
    yield dg.AssetCheckResult(
        check_name="scores_valid",
        passed=bad == 0 and dupes == 0,
        metadata={"out_of_range": bad, "duplicate_customers": dupes},
    )


@_asset(
    DRIFT_KEY,
    [FEATURES_KEY, CHAMPION_KEY],
    {WAREHOUSE_KIND, "table"},
    "Population stability index of each feature: today's customers against the "
    "champion's training data (ml.feature_drift).",
    check_specs=[
        dg.AssetCheckSpec(
            "drift_under_threshold", asset=DRIFT_KEY, description=f"Every feature's PSI under {PSI_ALERT}."
        )
    ],
)
def feature_drift(warehouse: Warehouse, model_store: ModelStore):
    champion = model_store.champion(MODEL)
    if champion is None:
        raise FileNotFoundError(f"No champion in {model_store.folder(MODEL)}: materialize the champion first.")
    profile = model_store.read(MODEL, champion, "info.json")["reference_profile"]
    import pandas as pd

    values = psi(profile, time_split(_features(warehouse)).score)
    drift = pd.DataFrame({"feature": list(values), "psi": list(values.values()), "model_version": champion})
    with warehouse.connect() as conn:
        write_dataframe(conn, ML_SCHEMA, "feature_drift", drift)
        meta = table_metadata(conn, ML_SCHEMA, "feature_drift", rows=len(drift))
    drifted = {f: v for f, v in values.items() if v >= PSI_ALERT}
    yield dg.MaterializeResult(
        metadata={
            **meta,
            "model_version": champion,
            **_reads_features({"feature": [], "psi": list(values), "model_version": []}),
            "max_psi": dg.MetadataValue.float(max(values.values())),
            **{f"psi/{f}": dg.MetadataValue.float(v) for f, v in values.items()},
        }
    )
    yield dg.AssetCheckResult(
        check_name="drift_under_threshold",
        passed=not drifted,
        description=", ".join(f"{f} PSI {v:.2f}" for f, v in drifted.items()) or None,
        metadata={"drifted_features": sorted(drifted)},
    )
