"""`make backtest`: the newest churn model's walk-forward backtest, as its evaluation
stored it (one fold per partition of ml/churn_model_evaluation), beside the single
held-out split it replaced: the model itself on the newest labelled snapshot of
features.customer_features. `--plot PATH` writes the backtest's plot (docs/ml.md's)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from platform_ml.defs.churn import BASELINE_MARGIN, MODEL
from platform_ml.features import FEATURE_TABLE, FEATURES_SCHEMA
from platform_ml.model import Backtest, backtest_plot, evaluate, time_split
from platform_ml.resources import build_resources
from platform_shared import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--plot", type=Path, help="write the backtest's plot (PNG) here")
    args = parser.parse_args(argv)
    resources = build_resources(load_settings())
    store = resources["model_store"]
    version = store.newest(MODEL)
    backtest = Backtest(store.backtest(MODEL, version))
    if not backtest.folds:
        print(f"model {version} has no backtest yet: make run", file=sys.stderr)
        return 1
    print(f"churn model {version}: walk-forward backtest, {len(backtest.folds)} folds")
    header = ("test cut-off", "train rows", "test rows", "ROC AUC", "recency", "Brier", "const.")
    print("{:<13} {:>10} {:>9} {:>8} {:>8} {:>6} {:>6}".format(*header))
    for cutoff, f in sorted(backtest.folds.items()):
        print(
            f"{cutoff:<13} {f['training_rows']:>10,} {int(f['test_rows']):>9,} {f['roc_auc']:>8.3f} "
            f"{f['recency_roc_auc']:>8.3f} {f['brier']:>6.3f} {f['prior_brier']:>6.3f}"
        )
    worst_cutoff, worst = backtest.worst
    print(
        f"mean ROC AUC {backtest.mean():.3f} (recency {backtest.mean('recency_roc_auc'):.3f}), worst fold "
        f"{worst_cutoff} {worst:.3f}, trend (newest - oldest) {backtest.trend:+.3f}; gate: "
        f"{backtest.beats_baseline(BASELINE_MARGIN) or 'passed'}"
    )
    with resources["warehouse"].connect(read_only=True) as conn:
        features = conn.execute(f"select * from {FEATURES_SCHEMA}.{FEATURE_TABLE}").df()
    split = time_split(features)
    single = evaluate(store.load(MODEL, version), split.test)
    print(
        f"single held-out split (the evaluation before the backtest): test cut-off "
        f"{split.test['as_of'].max().date()}, {int(single['test_rows']):,} rows, ROC AUC {single['roc_auc']:.3f} "
        f"(recency {single['recency_roc_auc']:.3f}), Brier {single['brier']:.3f} (constant {single['prior_brier']:.3f})"
    )
    if args.plot:
        args.plot.write_bytes(backtest_plot(backtest, f"churn model {version}: backtest"))
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
