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
from collections.abc import Mapping
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
    partitions: int = 0  # partitions materialized, for a partitioned asset


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
    return defs() if callable(defs) else defs  # pyright: ignore[reportReturnType]  (a module's attribute)


def _seconds(meta: Mapping) -> float | None:
    for name in ("duration_s", "Execution Duration"):
        if name in meta:
            return float(meta[name].value)
    return None


# Dagster's tags of a run over a range of partitions (a single-run backfill).
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
# Each run names its location (runs in process carry no code location of their own).
LOCATION_TAG = "platform/location"


def phases(defs: dg.Definitions) -> list[list[dg.AssetKey]]:
    """The runs of a location, in order: everything, or, when some assets are partitioned,
    what comes before them, then them and what follows. A run over partitions needs their
    keys at launch, and the first run may add them (the ML features add backtest folds)."""
    graph = defs.resolve_asset_graph()
    later: set[dg.AssetKey] = set()
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if node.is_materializable and (node.partitions_def or later & set(node.parent_keys)):
            later.add(key)
    first = [k for k in graph.toposorted_asset_keys if graph.get(k).is_materializable and k not in later]
    return [keys for keys in (first, sorted(later)) if keys]


def partition_tags(defs: dg.Definitions, keys: list[dg.AssetKey], instance: dg.DagsterInstance) -> dict[str, str]:
    """The partitions a plain run covers: every partition of a dynamic set (the backtest's
    folds), the newest of a time window (today's). Not the whole history of a daily asset
    on its first run: dbt's first build writes every day anyway, and Dagster takes minutes
    to record some 900 days' materializations (a backfill does that, once)."""
    graph = defs.resolve_asset_graph()
    found = {p for k in keys if (p := graph.get(k).partitions_def)}
    if not found:
        return {}
    [partitions] = found  # one partitioning per location run
    names = partitions.get_partition_keys(dynamic_partitions_store=instance)
    if isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        names = names[-1:]
    if not names:
        raise ValueError(f"{sorted(k.to_user_string() for k in keys)}: no partition to run yet")
    return {RANGE_START: names[0], RANGE_END: names[-1]}


def run_location(location: str, instance: dg.DagsterInstance) -> LocationResult:
    """Every materializable asset of a location, in one in-process run (two when some
    assets are partitioned: ``phases``)."""
    defs = load_location(location)
    done: dict[dg.AssetKey, AssetRow] = {}
    failed_steps: set[str] = set()
    evaluations = []
    success = True
    started = time.perf_counter()
    for keys in phases(defs):
        tags = {LOCATION_TAG: location, **partition_tags(defs, keys, instance)}
        result = plain_run_job(defs, keys).execute_in_process(instance=instance, raise_on_error=False, tags=tags)
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            rows = mat.metadata.get("dagster/row_count")
            row = done.setdefault(
                mat.asset_key,
                AssetRow(mat.asset_key.to_user_string(), location, "materialized", None, _seconds(mat.metadata)),
            )
            if rows:  # a partitioned table's count is the whole table's, in each partition
                row.rows = int(rows.value)  # pyright: ignore[reportArgumentType]
            if mat.partition:
                row.partitions += 1
        failed_steps |= {e.step_key for e in result.all_events if e.is_step_failure and e.step_key}
        evaluations += result.get_asset_check_evaluations()
        success = success and result.success
        if not result.success:
            break
    elapsed = time.perf_counter() - started
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
    failed_checks = [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in evaluations if not c.passed]
    return LocationResult(
        location,
        success,
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
            f"{r.status} ({r.partitions} partition{'s' if r.partitions > 1 else ''})" if r.partitions else r.status,
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
    # The stage's rows against the source, and raw's (what readers see) against it.
    print(f"{'table':<16} {'compared':>9} {'missing':>8} {'extra':>6} {'different':>10} {'raw':>6}  before the repair")
    for e in sorted(result.get_asset_check_evaluations(), key=lambda e: e.asset_key.path[-1]):
        m = {k: v.value for k, v in e.metadata.items()}
        print(
            f"{e.asset_key.path[-1]:<16} {m['rows_compared']:>9,} {m['rows_missing']:>8,} {m['rows_extra']:>6,} "
            f"{m['rows_different']:>10,} {m['raw_rows_unlike_source']:>6,}  {'matched' if e.passed else 'repaired'}"
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
        f"{len(results)} location{'s' if len(results) != 1 else ''}, {time.perf_counter() - started:.1f}s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
