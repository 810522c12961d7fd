"""Train, evaluate and watch the churn model: pure functions on data frames, no Dagster here."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

import numpy as np

# pandas and scikit-learn (about 1.2 and 2.5 s to import here) are imported by the
# functions that use them, when a step runs: loading the location (a code server, `dg
# check defs`) never needs them.
if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

from .features import CATEGORICAL_FEATURES, CHURN_WINDOW_DAYS, NUMERIC_FEATURES

# Gradient-boosted trees: the churn signal is an interaction (a long gap means more for
# a frequent buyer than for a rare one), which trees find without hand-made ratios.
DEFAULT_PARAMS = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "random_state": 0}
# Precision is measured on the riskiest tenth of customers: the ones a retention
# campaign would contact.
TOP_SHARE = 0.10
# Population stability index bins, and the usual reading of it: < 0.1 stable,
# 0.1-0.25 moderate shift, > 0.25 a shift worth retraining for.
PSI_BINS = 10
PSI_ALERT = 0.25


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    score: pd.DataFrame


def time_split(features: pd.DataFrame) -> Split:
    """Train on the labelled snapshots whose label window ends by the newest labelled
    one; test on the newest; score the unlabelled (current) one.

    Splitting by time, not at random, keeps the test set strictly after what the
    model learned from, as it will be when the model scores customers. A label looks
    ``CHURN_WINDOW_DAYS`` ahead of its snapshot, so a snapshot closer than that to the
    test cut-off is left out: its label would be computed from orders placed after the
    test cut-off, the period the model is tested on.
    """
    import pandas as pd

    labelled = features[features["churned"].notna()]
    newest = labelled["as_of"].max()
    current = features[features["churned"].isna()]
    window = pd.Timedelta(days=CHURN_WINDOW_DAYS)
    # (pandas ships no types: a boolean mask's selection is a DataFrame here)
    return Split(
        train=cast("pd.DataFrame", labelled.loc[labelled["as_of"] + window <= newest]),
        test=cast("pd.DataFrame", labelled[labelled["as_of"] == newest]),
        score=cast("pd.DataFrame", current[current["as_of"] == current["as_of"].max()]),
    )


def fold_split(features: pd.DataFrame, test: datetime, training: list[datetime]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and test rows of one backtest fold: the training snapshots
    (``features.fold_training_cutoffs``) and the test one, labelled rows only."""
    import pandas as pd

    labelled = features.loc[features["churned"].notna()]
    train_rows = labelled.loc[labelled["as_of"].isin([pd.Timestamp(c) for c in training])]
    return train_rows, labelled.loc[labelled["as_of"] == pd.Timestamp(test)]


@dataclass(frozen=True)
class Backtest:
    """A model configuration's folds (one dict of metrics per test cut-off) summed up."""

    folds: dict[str, dict]

    def mean(self, metric: str = "roc_auc") -> float:
        return float(np.mean([f[metric] for f in self.folds.values()]))

    @property
    def worst(self) -> tuple[str, float]:
        """The fold with the lowest ROC AUC, and that AUC."""
        cutoff = min(self.folds, key=lambda c: self.folds[c]["roc_auc"])
        return cutoff, self.folds[cutoff]["roc_auc"]

    @property
    def trend(self) -> float:
        """ROC AUC per fold, newest minus oldest: negative when the model ages badly."""
        ordered = [self.folds[c]["roc_auc"] for c in sorted(self.folds)]
        return ordered[-1] - ordered[0]

    def champion_mean(self) -> float | None:
        """The champion configuration's mean ROC AUC on the same folds: None when there is
        no other champion, NaN when a fold could not score it."""
        scores = [f.get("champion_roc_auc") for f in self.folds.values()]
        if all(s is None for s in scores):
            return None
        return float(np.mean([np.nan if s is None else s for s in scores]))

    def beats_baseline(self, margin: float) -> str | None:
        """Why the configuration is not good enough to publish, or None: its mean ROC AUC
        must be ``margin`` above chance, its worst fold's half that, and its mean Brier
        score below the constant baseline's (one fold may be worse calibrated: with few
        rows the trees are overconfident)."""
        problems = []
        if self.mean() < 0.5 + margin:
            problems.append(f"mean ROC AUC {self.mean():.3f} (needs {0.5 + margin:.2f})")
        cutoff, worst = self.worst
        if worst < 0.5 + margin / 2:
            problems.append(f"ROC AUC {worst:.3f} in the fold {cutoff} (needs {0.5 + margin / 2:.2f} in every fold)")
        if self.mean("brier") >= self.mean("prior_brier"):
            problems.append(
                f"mean Brier {self.mean('brier'):.3f}, the constant baseline's {self.mean('prior_brier'):.3f}"
            )
        return "; ".join(problems) or None


def fingerprint(frame: pd.DataFrame) -> str:
    """A stable hash of the rows a model was trained on."""
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False)  # pyright: ignore[reportAttributeAccessIssue]
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]


def train(frame: pd.DataFrame, features: list[str], params: dict) -> Pipeline:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [f for f in features if f in NUMERIC_FEATURES]
    categorical = [f for f in features if f in CATEGORICAL_FEATURES]
    prepare = ColumnTransformer(
        [
            ("numeric", "passthrough", numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ]
    )
    model = Pipeline([("prepare", prepare), ("clf", HistGradientBoostingClassifier(**params))])
    y = frame["churned"].astype(int)
    if y.nunique() < 2:  # pyright: ignore[reportGeneralTypeIssues]  (pandas ships no types: an int here)
        raise ValueError(
            f"The training snapshots hold {len(y)} customers of one class only: "
            "the demo database is too small to train on (raise SCALE)."
        )
    model.fit(frame[features], y)
    return model


def predict(model: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """Churn probabilities, with the columns the model was trained on."""
    return model.predict_proba(frame[list(model.feature_names_in_)])[:, 1]


def precision_at(y: np.ndarray, scores: np.ndarray, share: float = TOP_SHARE) -> float:
    k = max(1, int(round(len(y) * share)))
    return float(y[np.argsort(-scores, kind="stable")[:k]].mean())


def evaluate(model: Pipeline, test: pd.DataFrame) -> dict[str, float]:
    """Held-out metrics of the model, of the trivial baseline (the churn rate for
    everyone: ROC AUC 0.5, ``prior_brier``) and of the usual heuristic (recency alone:
    longer since the last order, more likely to churn)."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    y = test["churned"].astype(int).to_numpy()
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"The test snapshot has {len(y)} customers of one class only: "
            "the demo database is too small to evaluate (raise SCALE)."
        )
    scores = predict(model, test)
    recency = test["recency_days"].to_numpy(dtype=float)
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "precision_at_10pct": precision_at(y, scores),
        "brier": float(brier_score_loss(y, scores)),
        "recency_roc_auc": float(roc_auc_score(y, recency)),
        "recency_precision_at_10pct": precision_at(y, recency),
        "prior_brier": float(brier_score_loss(y, np.full(len(y), y.mean()))),
        "test_rows": float(len(y)),
        "test_churn_rate": float(y.mean()),
    }


def roc_plot(model: Pipeline, test: pd.DataFrame, title: str) -> bytes:
    """A PNG of the model's and the recency baseline's ROC curves on the test snapshot."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = test["churned"].astype(int).to_numpy()
    fig, ax = _pyplot().subplots(figsize=(5, 5), dpi=100)
    for label, scores in [("model", predict(model, test)), ("recency baseline", test["recency_days"])]:
        fpr, tpr, _ = roc_curve(y, scores)
        ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(y, scores):.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    return _png(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def backtest_plot(backtest: Backtest, title: str) -> bytes:
    """A PNG of the ROC AUC per fold: the model, the recency baseline, the champion."""
    cutoffs = sorted(backtest.folds)
    fig, ax = _pyplot().subplots(figsize=(6, 4), dpi=100)
    for label, metric in [
        ("model", "roc_auc"),
        ("recency baseline", "recency_roc_auc"),
        ("champion", "champion_roc_auc"),
    ]:
        values = [backtest.folds[c].get(metric) for c in cutoffs]
        if any(v is not None for v in values):
            ax.plot(cutoffs, [np.nan if v is None else v for v in values], marker="o", label=label)
    ax.axhline(0.5, linestyle=":", color="grey", label="chance")
    ax.set(xlabel="test cut-off (fold)", ylabel="ROC AUC", title=title)
    ax.legend(loc="lower left")
    return _png(fig)


def reference_profile(frame: pd.DataFrame, features: list[str]) -> dict:
    """The training distribution of each feature, kept with the model to measure drift:
    decile edges and shares for numbers, category shares for categories."""
    profile = {}
    for f in features:
        if f in CATEGORICAL_FEATURES:
            profile[f] = {"shares": frame[f].value_counts(normalize=True).to_dict()}
        else:
            edges = np.unique(np.quantile(frame[f].astype(float), np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
            profile[f] = {"edges": edges.tolist(), "shares": _bin_shares(frame[f], edges).tolist()}
    return profile


def _bin_shares(values, edges) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values.astype(float), side="right"), minlength=len(edges) + 1)
    return counts / max(1, counts.sum())


def psi(profile: dict, frame: pd.DataFrame) -> dict[str, float]:
    """Population stability index of each feature of ``frame`` against the profile."""
    out = {}
    for f, ref in profile.items():
        if "edges" in ref:
            expected = np.asarray(ref["shares"])
            actual = _bin_shares(frame[f], np.asarray(ref["edges"]))
        else:
            categories = sorted(set(ref["shares"]) | set(frame[f].dropna().unique()))
            current = frame[f].value_counts(normalize=True)
            expected = np.array([ref["shares"].get(c, 0.0) for c in categories])
            actual = np.array([current.get(c, 0.0) for c in categories])
        # A floor keeps empty bins from dividing by zero (the usual PSI convention).
        expected, actual = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
        out[f] = float(np.sum((actual - expected) * np.log(actual / expected)))
    return out


def labels_look_past(training_cutoffs: list[str] | None, test_cutoff) -> bool:
    """Whether a model trained on the snapshots ``training_cutoffs`` (its info.json) saw
    labels computed from orders after ``test_cutoff``: its score on that test snapshot is
    then not held out. Unknown cut-offs count as such.

    Example:
        >>> labels_look_past(["2026-01-01", "2026-03-03"], "2026-05-02")
        False
        >>> labels_look_past(["2026-04-02"], "2026-05-02")  # its labels reach 2026-06-01
        True
    """
    import pandas as pd

    if not training_cutoffs:
        return True
    newest = max(pd.Timestamp(c) for c in training_cutoffs)
    return bool(newest + pd.Timedelta(days=CHURN_WINDOW_DAYS) > pd.Timestamp(test_cutoff))


_CANNOT_SCORE = "cannot be scored on today's features"


def decide_champion(
    challenger: str,
    challenger_auc: float,
    champion: str | None,
    champion_auc: float | None,
    *,
    not_compared: str | None = None,
) -> tuple[bool, str]:
    """Whether the challenger becomes the champion, and why. Both ROC AUCs are means over
    the same backtest folds (each configuration trained on what was known at each fold's
    cut-off); a champion without one (NaN, or never evaluated) gives way, for the reason
    ``not_compared`` when the evaluation gave one.

    Example:
        >>> decide_champion("v2", 0.81, "v1", 0.80)
        (True, "mean ROC AUC 0.8100 beats the champion's 0.8000")
        >>> decide_champion("v2", 0.80, "v1", 0.80)[0]
        False
    """
    if champion is None:
        return True, "first model: no champion yet"
    if champion == challenger:
        return False, f"{challenger} is already the champion"
    if champion_auc is None or champion_auc != champion_auc:  # NaN: the champion has no score
        return True, f"the champion {champion} {not_compared or _CANNOT_SCORE}"
    if challenger_auc > champion_auc:
        return True, f"mean ROC AUC {challenger_auc:.4f} beats the champion's {champion_auc:.4f}"
    return False, (
        f"challenger {challenger} mean ROC AUC {challenger_auc:.4f} does not beat "
        f"champion {champion}'s {champion_auc:.4f} on the same backtest folds"
    )
