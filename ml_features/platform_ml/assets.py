"""The ML team's assets: features, the churn model, its evaluation."""

import shutil
import time
from datetime import datetime, timezone

import dagster as dg
import joblib
from platform_shared import ML_TEAM, WAREHOUSE_POOL, DuckDBWarehouse, raw_asset_key, table_metadata

from .features import FEATURE_COLUMNS, FEATURE_TABLE, FEATURES_SCHEMA, build_features, last_event_time, snapshot_dates
from .model import MODEL_PARAMS, evaluate, fingerprint, time_split, train
from .resources import ModelStore

FEATURES_KEY = dg.AssetKey([FEATURES_SCHEMA, FEATURE_TABLE])
MODEL_KEY = dg.AssetKey(["ml", "churn_model"])
EVALUATION_KEY = dg.AssetKey(["ml", "churn_model_evaluation"])
# The raw tables the features read, by their catalog (warehouse) names.
RAW_INPUTS = ("customers", "orders", "payments", "web_sessions")
GROUP = "ml"


@dg.asset(
    key=FEATURES_KEY,
    deps=[raw_asset_key(t) for t in RAW_INPUTS],
    group_name=GROUP,
    owners=[ML_TEAM],
    kinds={"duckdb", "table"},
    pool=WAREHOUSE_POOL,
    description="Recency, frequency, monetary value, refunds and sessions per customer as "
    "of monthly cut-offs, with the churn label of the 60 days after each.",
)
def customer_features(warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    with warehouse.connect() as conn:
        cutoffs = snapshot_dates(last_event_time(conn))
        build_features(conn, cutoffs)
        meta = table_metadata(conn, FEATURES_SCHEMA, FEATURE_TABLE)
    return dg.MaterializeResult(
        metadata={**meta, "cutoffs": [c.date().isoformat() for c in cutoffs]}
    )


def _load_features(warehouse: DuckDBWarehouse):
    with warehouse.connect(read_only=True) as conn:
        return conn.execute(f"select * from {FEATURES_SCHEMA}.{FEATURE_TABLE}").df()


@dg.asset(
    key=MODEL_KEY,
    deps=[FEATURES_KEY],
    group_name=GROUP,
    owners=[ML_TEAM],
    kinds={"scikitlearn"},
    pool=WAREHOUSE_POOL,
    description="Churn in the next 60 days: logistic regression trained on earlier "
    "snapshots; saved as a versioned joblib artifact.",
)
def churn_model(warehouse: DuckDBWarehouse, model_store: ModelStore) -> dg.MaterializeResult:
    split = time_split(_load_features(warehouse))
    started = time.perf_counter()
    model = train(split.train)
    seconds = time.perf_counter() - started
    version = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    folder = model_store.path / "churn_model"
    folder.mkdir(parents=True, exist_ok=True)
    artifact = folder / f"{version}.joblib"
    joblib.dump(model, artifact)
    shutil.copyfile(artifact, folder / "latest.joblib")
    return dg.MaterializeResult(
        metadata={
            "artifact": dg.MetadataValue.path(str(artifact)),
            "version": version,
            "training_rows": len(split.train),
            "training_fingerprint": fingerprint(split.train[[*FEATURE_COLUMNS, "churned"]]),
            "features": FEATURE_COLUMNS,
            "params": MODEL_PARAMS,
            "training_seconds": round(seconds, 3),
        }
    )


@dg.asset(
    key=EVALUATION_KEY,
    deps=[MODEL_KEY],
    group_name=GROUP,
    owners=[ML_TEAM],
    kinds={"scikitlearn"},
    pool=WAREHOUSE_POOL,
    description="Held-out ROC AUC of the churn model against a recency baseline.",
)
def churn_model_evaluation(warehouse: DuckDBWarehouse, model_store: ModelStore) -> dg.MaterializeResult:
    model = joblib.load(model_store.path / "churn_model" / "latest.joblib")
    metrics = evaluate(model, time_split(_load_features(warehouse)).test)
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.float(v) for k, v in metrics.items()})
