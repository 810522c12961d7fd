"""Materialize every materializable asset of the three code locations, in dependency
order, into the Dagster instance of DAGSTER_HOME, and print a summary table.

This is `make run` (and, with --location ingestion, `make ingest`; with --reconcile,
`make reconcile`: every row of the raw tables compared with the source and repaired). Each location runs as
one in-process run: a subprocess per step costs about 6 s on these machines. A tool at
the repo root may import every location; the locations never import each other.

Exit status: 0 when every asset materialized and every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import dataclass

import dagster as dg

from platform_shared import load_settings
from platform_shared.automation import plain_run_job
from platform_shared.workspace import locations

# dg.toml's order, the dependency order: ingestion feeds analytics_dbt and ml_features.
LOCATIONS = {loc.name: loc.module for loc in locations(load_settings().root)}


@dataclass
class AssetRow:
    asset: str
    location: str
    status: str
    rows: int | None
    seconds: float | None


@dataclass
class LocationResult:
    location: str
    success: bool
    rows: list[AssetRow]
    failed_checks: list[str]
    checks_run: int = 0  # asset checks evaluated in the run
    checks_defined: int = 0  # asset checks the location defines


def load_location(location: str) -> dg.Definitions:
    module = importlib.import_module(LOCATIONS[location])
    defs = module.defs
    return defs() if callable(defs) else defs


def _seconds(meta: dict) -> float | None:
    for name in ("duration_s", "Execution Duration"):
        if name in meta:
            return float(meta[name].value)
    return None


def run_location(location: str, instance: dg.DagsterInstance) -> LocationResult:
    """One in-process run of every materializable asset of a location."""
    defs = load_location(location)
    job = plain_run_job(defs)
    started = time.perf_counter()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    elapsed = time.perf_counter() - started
    done: dict[dg.AssetKey, AssetRow] = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        rows = mat.metadata.get("dagster/row_count")
        done[mat.asset_key] = AssetRow(
            mat.asset_key.to_user_string(),
            location,
            "materialized",
            rows.value if rows else None,
            _seconds(mat.metadata),
        )
    failed_steps = {e.step_key for e in result.all_events if e.is_step_failure}
    table = []
    for ad in defs.resolve_all_asset_specs():
        if ad.key in done:
            table.append(done[ad.key])
        elif _is_materializable(defs, ad.key):
            status = "failed" if failed_steps else "skipped"
            table.append(AssetRow(ad.key.to_user_string(), location, status, None, None))
    for row in table:
        if row.seconds is None and row.status == "materialized":
            row.seconds = round(elapsed, 2)
    evaluations = result.get_asset_check_evaluations()
    failed_checks = [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in evaluations if not c.passed]
    return LocationResult(
        location,
        result.success,
        sorted(table, key=lambda r: r.asset),
        failed_checks,
        len(evaluations),
        len(defs.resolve_asset_graph().asset_check_keys),
    )


def _is_materializable(defs: dg.Definitions, key: dg.AssetKey) -> bool:
    return defs.resolve_asset_graph().get(key).is_materializable


def format_table(rows: list[AssetRow]) -> str:
    header = ("asset", "location", "status", "rows", "seconds")
    cells = [header] + [
        (
            r.asset,
            r.location,
            r.status,
            f"{r.rows:,}" if r.rows is not None else "-",
            f"{r.seconds:.2f}" if r.seconds is not None else "-",
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = [
        "  ".join(c[i].ljust(widths[i]) if i < 3 else c[i].rjust(widths[i]) for i in range(len(header))) for c in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def reconcile(tables: list[str], instance: dg.DagsterInstance) -> int:
    """Run the reconciliation check of each raw table (all when none), print what differed."""
    from platform_shared import RECONCILE_CHECK

    defs = load_location("ingestion")
    keys = sorted(k for k in defs.resolve_asset_graph().asset_check_keys if k.name == RECONCILE_CHECK)
    unknown = set(tables) - {k.asset_key.path[-1] for k in keys}
    if unknown:
        print(
            f"no reconcilable raw table {sorted(unknown)}; known: {[k.asset_key.path[-1] for k in keys]}",
            file=sys.stderr,
        )
        return 2
    keys = [k for k in keys if not tables or k.asset_key.path[-1] in tables]
    job = dg.Definitions.merge(
        defs,
        dg.Definitions(jobs=[dg.define_asset_job("reconcile_raw_tables", selection=dg.AssetSelection.checks(*keys))]),
    ).resolve_job_def("reconcile_raw_tables")
    started = time.perf_counter()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    print(f"{'table':<16} {'compared':>9} {'missing':>8} {'extra':>6} {'different':>10}  before the repair")
    for e in sorted(result.get_asset_check_evaluations(), key=lambda e: e.asset_key.path[-1]):
        m = {k: v.value for k, v in e.metadata.items()}
        print(
            f"{e.asset_key.path[-1]:<16} {m['rows_compared']:>9,} {m['rows_missing']:>8,} {m['rows_extra']:>6,} "
            f"{m['rows_different']:>10,}  {'matched' if e.passed else 'repaired'}"
        )
    for event in result.all_events:
        if event.is_step_failure and (error := event.step_failure_data.error):
            print(f"FAILED {event.step_key}: {error.message.strip()}", file=sys.stderr)
    print(f"\n{'OK' if result.success else 'FAILED'}: {len(keys)} table(s), {time.perf_counter() - started:.1f}s")
    return 0 if result.success else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--location",
        choices=list(LOCATIONS),
        action="append",
        help="run only this location (repeatable); default: all, in order",
    )
    parser.add_argument(
        "--reconcile", action="store_true", help="compare the raw tables with the source and repair them, instead"
    )
    parser.add_argument("--tables", default="", help="with --reconcile: a,b (default: every table)")
    args = parser.parse_args(argv)
    instance = dg.DagsterInstance.get()
    if args.reconcile:
        return reconcile([t for t in args.tables.split(",") if t], instance)
    started = time.perf_counter()
    results = [run_location(loc, instance) for loc in (args.location or list(LOCATIONS))]
    print()
    print(format_table([row for r in results for row in r.rows]))
    for r in results:
        for check in r.failed_checks:
            print(f"FAILED CHECK  {check}  ({r.location})")
    ok = all(r.success for r in results)
    print(
        f"\n{'OK' if ok else 'FAILED'}: {sum(len(r.rows) for r in results)} assets in "
        f"{len(results)} locations, {time.perf_counter() - started:.1f}s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
