"""The ML team's assets: features, the churn model's lifecycle, scores and drift.

    raw tables -> features/customer_features -> ml/churn_model -> ml/churn_model_evaluation
               -> ml/churn_model_champion -> ml/customer_churn_scores, ml/feature_drift

A trained version becomes the champion only when it beats the trivial baseline by a
margin (a blocking check: a failed one stops the run before promotion) and the current
champion on the same held-out snapshot. Scores and drift always use the champion.
"""

import base64
import time
from datetime import timedelta
from typing import TYPE_CHECKING

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
    build_features,
    feature_lineage,
    feature_problems,
    has_customer_history,
    last_event_time,
    snapshot_dates,
)
from ..model import (
    DEFAULT_PARAMS,
    PSI_ALERT,
    decide_champion,
    evaluate,
    fingerprint,
    labels_look_past,
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
        cutoffs = snapshot_dates(last_event_time(conn))
        point_in_time = has_customer_history(conn)
        if not point_in_time:
            context.log.warning(
                "raw.customers has no history (catalog history: scd2): country and "
                "signup channel are today's values, not as of each cut-off."
            )
        sql = build_features(conn, cutoffs)
        meta = table_metadata(conn, FEATURES_SCHEMA, FEATURE_TABLE)
        lineage = feature_lineage(conn, sql)
    return dg.MaterializeResult(
        metadata={
            **meta,
            **lineage,
            "cutoffs": [c.date().isoformat() for c in cutoffs],
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
        "training_fingerprint": fingerprint(split.train[[*config.features, "churned"]]),
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
    "Held-out metrics (ROC AUC, precision at 10%, Brier) of the newest model, of the "
    "trivial and recency baselines and of the current champion, on the newest labelled snapshot.",
    check_specs=[
        dg.AssetCheckSpec(
            "beats_baseline",
            asset=EVALUATION_KEY,
            blocking=True,
            description=f"ROC AUC at least {0.5 + BASELINE_MARGIN} and a Brier score below the constant baseline's.",
        )
    ],
)
def churn_model_evaluation(warehouse: Warehouse, model_store: ModelStore):
    version = model_store.newest(MODEL)
    test = time_split(_features(warehouse)).test
    fitted = model_store.load(MODEL, version)
    metrics = evaluate(fitted, test)
    champion = model_store.champion(MODEL)
    not_compared = None  # why the champion has no ROC AUC on this snapshot
    if champion and champion != version:
        test_cutoff = test["as_of"].max()
        if labels_look_past(model_store.read(MODEL, champion, "info.json").get("training_cutoffs"), test_cutoff):
            not_compared = (
                f"was trained on labels that look past this test cut-off ({test_cutoff.date()}): "
                "its score here would not be held out"
            )
        else:
            try:
                metrics["champion_roc_auc"] = evaluate(model_store.load(MODEL, champion), test)["roc_auc"]
            except (KeyError, ValueError) as e:  # the champion needs features that are gone
                not_compared = f"cannot score today's features: {e}"
        if not_compared:
            metrics["champion_roc_auc"] = float("nan")
            champion = f"{champion} ({not_compared})"
    png = roc_plot(fitted, test, f"churn model {version}")
    plot = model_store.folder(MODEL) / version / "roc.png"
    plot.write_bytes(png)
    model_store.write(
        MODEL,
        version,
        "evaluation.json",
        {
            **metrics,
            "champion": champion,
            "champion_not_compared": not_compared,
            "test_as_of": str(test["as_of"].max().date()),
        },
    )
    margin = metrics["roc_auc"] - 0.5
    passed = margin >= BASELINE_MARGIN and metrics["brier"] < metrics["prior_brier"]
    yield dg.MaterializeResult(
        metadata={
            "version": version,
            **{k: dg.MetadataValue.float(v) for k, v in metrics.items()},
            "champion": str(champion),
            "roc_plot": dg.MetadataValue.md(f"![ROC curve](data:image/png;base64,{base64.b64encode(png).decode()})"),
            "roc_plot_path": dg.MetadataValue.path(str(plot)),
            COLUMN_LINEAGE: _metric_lineage(metrics),
        }
    )
    yield dg.AssetCheckResult(
        check_name="beats_baseline",
        passed=bool(passed),
        metadata={"roc_auc_over_chance": dg.MetadataValue.float(margin), "required": BASELINE_MARGIN},
        description=None
        if passed
        else (
            f"Model {version}: ROC AUC {metrics['roc_auc']:.3f} (needs {0.5 + BASELINE_MARGIN:.2f}), "
            f"Brier {metrics['brier']:.3f} against the constant baseline's {metrics['prior_brier']:.3f}: "
            "it is not published."
        ),
    )


@_asset(
    CHAMPION_KEY,
    [EVALUATION_KEY],
    {"scikitlearn"},
    "The model version that scores customers: the newest one when it beats the current "
    "champion on the same held-out snapshot, otherwise the champion stays.",
    pool=None,
)
def churn_model_champion(context: dg.AssetExecutionContext, model_store: ModelStore) -> dg.MaterializeResult:
    version = model_store.newest(MODEL)
    evaluation = model_store.read(MODEL, version, "evaluation.json")
    champion = model_store.champion(MODEL)
    challenger_auc, champion_auc = evaluation["roc_auc"], evaluation.get("champion_roc_auc")
    promote, reason = decide_champion(
        version, challenger_auc, champion, champion_auc, not_compared=evaluation.get("champion_not_compared")
    )
    if promote:
        model_store.promote(MODEL, version, reason)
    context.log.info(f"{'Promoted' if promote else 'Kept the champion'}: {reason}")
    return dg.MaterializeResult(
        metadata={
            "champion": model_store.champion(MODEL),
            "challenger": version,
            "promoted": promote,
            "reason": reason,
            "champion_roc_auc": dg.MetadataValue.float(challenger_auc if promote else (champion_auc or 0.0)),
            COLUMN_LINEAGE: dg.TableColumnLineage(
                deps_by_column={"champion": [dg.TableColumnDep(EVALUATION_KEY, "roc_auc")]}
            ),
        }
    )


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
            "mean_churn_probability": float(scores["churn_probability"].mean()),
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
