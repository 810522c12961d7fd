"""Train and evaluate the churn model: pure functions on data frames, no Dagster here."""

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from .features import FEATURE_COLUMNS

MODEL_PARAMS = {"C": 1.0, "max_iter": 1000, "class_weight": "balanced"}


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame


def time_split(features: pd.DataFrame) -> Split:
    """Train on every labelled snapshot but the newest; test on the newest.

    Splitting by time, not at random, keeps the test set strictly after what the
    model learned from, as it will be when the model scores customers.
    """
    labelled = features[features["churned"].notna()]
    newest = labelled["as_of"].max()
    return Split(train=labelled[labelled["as_of"] < newest], test=labelled[labelled["as_of"] == newest])


def fingerprint(frame: pd.DataFrame) -> str:
    """A stable hash of the rows a model was trained on."""
    hashed = pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]


def train(train: pd.DataFrame) -> Pipeline:
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(**MODEL_PARAMS))])
    model.fit(train[FEATURE_COLUMNS].fillna(0), train["churned"].astype(int))
    return model


def evaluate(model: Pipeline, test: pd.DataFrame) -> dict[str, float]:
    """Held-out ROC AUC of the model and of a trivial baseline (longer since the last
    order means more likely to churn)."""
    y = test["churned"].astype(int).to_numpy()
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"The test snapshot has {len(y)} customers of one class only: "
            "the demo database is too small to evaluate (raise SCALE)."
        )
    scores = model.predict_proba(test[FEATURE_COLUMNS].fillna(0))[:, 1]
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "baseline_roc_auc": float(roc_auc_score(y, test["recency_days"].to_numpy())),
        "test_rows": float(len(y)),
        "test_churn_rate": float(y.mean()),
    }
