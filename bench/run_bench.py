"""Warm `make run` against its bare steps: where a daily run's time goes besides the work.

A platform at demo scale 1 lives under data/bench/run_loop/ (its own source, warehouse and
instance). After one cold `make run` (`python -m tools.run_all`), each round times, each in
a new process and one after the other (so the machine's drift falls on every side):

- warm `make run`: the three locations, nothing changed in the source;
- bare ingestion: the same library call per catalog table that the ingestion asset makes
  (`ingest_table`, an hourly run with nothing changed), without definitions, runs or instance;
- plain `dbt build` of analytics_dbt/ in dbt's environment (what `make dbt-build` runs), into
  a target folder of its own. It builds every model, the daily ones over every day; `make
  run` builds them in two dbt steps (the models, then the daily models' newest day), whose
  times are summed: the comparison gives `make run` less work, if anything;

and reads, from the instance, how long the ML location's steps took inside that `make
run` (the ML work has no entry point outside its assets: its bare time is taken as its
steps' time, so the ratio below flatters `make run` by the ML run's overhead, if anything).

    python -m bench.run_bench [--rounds 3]

Prints medians and the ratios of the targets (issue: warm `make run` at most 2x its bare
steps; its dbt step at most a plain `dbt build` plus 2 s), and writes them to
docs/bench/run_loop.md. Figures only: no assertions.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench.figures import provenance, record
from bench.ingest_bench import measure, source_database

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "data" / "bench" / "run_loop"
RESULTS = REPO / "docs" / "bench" / "run_loop.md"


def _env() -> dict[str, str]:
    home = WORK / "dagster_home"
    return {
        **os.environ,
        "SOURCE_DATABASE_URL": f"sqlite:///{WORK / 'app.db'}",
        "WAREHOUSE_PATH": str(WORK / "warehouse.duckdb"),
        "MODEL_DIR": str(WORK / "models"),
        "ALERT_LOG": str(WORK / "alerts.log"),
        "DAGSTER_HOME": str(home),
        "PII_HASH_KEY": "bench-only-key",  # one key for make run and the bare call
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def bare_ingestion() -> None:
    """The child process of the bare ingestion step."""
    from platform_ingestion.engine import ingest_table
    from platform_ingestion.loading import LoadRequest
    from platform_ingestion.resources import dlt_state_dir
    from platform_shared import Warehouse, load_catalog, load_settings

    settings = load_settings()
    warehouse = Warehouse(path=str(settings.warehouse_path))
    for table in load_catalog(settings.catalog_path).tables:
        ingest_table(
            table,
            request=LoadRequest(),
            warehouse=warehouse,
            source_url=settings.source_database_url,
            pipelines_dir=dlt_state_dir(settings),
            hash_key=os.environ["PII_HASH_KEY"],
        )


# What the dbt step logs after it added the column lineage of the models it built.
LINEAGE_LOG = re.compile(r"Column lineage of (\d+) models in ([0-9.]+) s")


def read_runs(since: float) -> tuple[dict[str, float], int, float]:
    """From the runs of the last `make run` (created after ``since``, a timestamp): the
    steps' total seconds (step start to step end) of each location, by the location
    `tools/run_all.py` tags them with (a location with partitioned assets runs twice); and
    the models whose column lineage the dbt steps computed, with its seconds, as they
    logged them."""
    from datetime import UTC, datetime

    import dagster as dg

    from tools.run_all import LOCATION_TAG

    found: dict[str, float] = {}
    models, lineage = 0, 0.0
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(dg.RunsFilter(created_after=datetime.fromtimestamp(since, UTC)))
        for run in runs:
            starts, total = {}, 0.0
            for e in instance.all_logs(run.run_id):
                kind = e.dagster_event and e.dagster_event.event_type_value
                if kind == "STEP_START":
                    starts[e.step_key] = e.timestamp
                elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and e.step_key in starts:
                    total += e.timestamp - starts.pop(e.step_key)
                elif e.user_message and (logged := LINEAGE_LOG.search(e.user_message)):
                    models, lineage = models + int(logged[1]), lineage + float(logged[2])
            if location := run.tags.get(LOCATION_TAG):  # (a run of something else: not counted)
                found[location] = found.get(location, 0.0) + total
    return found, models, lineage


def main() -> None:
    parser = argparse.ArgumentParser(description="Warm make run against its bare steps.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=["ingest"])
    args = parser.parse_args()
    if args.child:
        bare_ingestion()
        return

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "dagster_home").mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", WORK / "dagster_home" / "dagster.yaml")
    shutil.copyfile(source_database(1), WORK / "app.db")
    env = _env()
    os.environ.update(env)
    run_all = [sys.executable, "-m", "tools.run_all"]
    project = str(REPO / "analytics_dbt")
    dbt = [str(REPO / "analytics_dbt" / "engine" / ".venv" / "bin" / "dbt"), "build"]
    dbt += ["--project-dir", project, "--profiles-dir", project, "--target-path", str(WORK / "dbt_target")]
    cold, _, status = measure(run_all, env, WORK / "cold.log")
    if status != 0:
        raise SystemExit(f"the cold make run failed: see {WORK / 'cold.log'}")
    print(f"cold make run: {cold:.1f} s")

    rows: dict[str, list[float]] = {k: [] for k in ("make_run", "ingest", "dbt", "ml_steps", "dbt_step", "lineage")}
    models = 0
    for i in range(args.rounds):
        for name, cmd in (
            ("make_run", run_all),
            ("ingest", [sys.executable, "-m", "bench.run_bench", "--child", "ingest"]),
            ("dbt", dbt),
        ):
            since = time.time() - 1  # (the instance keeps a run's creation to the second)
            seconds, _, status = measure(cmd, env, WORK / f"{name}_{i}.log")
            if status != 0:
                raise SystemExit(f"{name} failed: see {WORK / f'{name}_{i}.log'}")
            rows[name].append(seconds)
            if name == "make_run":
                steps, models, lineage = read_runs(since)
                rows["ml_steps"].append(steps["ml_features"])
                rows["dbt_step"].append(steps["analytics_dbt"])
                if not models:
                    raise SystemExit("no 'Column lineage of N models' line in the dbt steps' logs: see LINEAGE_LOG")
                rows["lineage"].append(lineage)
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in rows.items()))

    med = {k: statistics.median(v) for k, v in rows.items()}
    bare = med["ingest"] + med["dbt"] + med["ml_steps"]
    lines = [
        f"| warm `make run` (nothing changed in the source) | {med['make_run']:.1f} s |",
        f"| bare ingestion (`ingest_table` per table, own process) | {med['ingest']:.1f} s |",
        f"| plain `dbt build` (analytics_dbt/, dbt's environment) | {med['dbt']:.1f} s |",
        f"| ML steps inside `make run` (read from the instance) | {med['ml_steps']:.1f} s |",
        f"| **warm `make run` / bare steps** (target at most 2) | **{med['make_run'] / bare:.2f}** |",
        f"| dbt steps inside `make run` (every model; the daily ones: the newest day) | {med['dbt_step']:.1f} s |",
        f"| **dbt steps - plain `dbt build`** (target at most 2 s) | **{med['dbt_step'] - med['dbt']:+.1f} s** |",
        f"| column lineage of the {models} models the dbt steps built (in them; target at most 1 s) "
        f"| {med['lineage']:.2f} s |",
    ]
    table = "\n".join(["| measured (median of each) | |", "|---|---|", *lines])
    print(table)
    RESULTS.write_text(
        "# Warm `make run` against its bare steps\n\n"
        f"Written by `python -m bench.run_bench --rounds {args.rounds}` (demo scale 1, {args.rounds} rounds; "
        f"the cold first run took {cold:.1f} s). {provenance()}\n\n{table}\n"
    )
    print(f"written to {RESULTS.relative_to(REPO)}")
    ratio, extra = med["make_run"] / bare, med["dbt_step"] - med["dbt"]
    record(
        {
            "warm_make_run": (ratio, f"{ratio:.2f} ({med['make_run']:.1f} s against {bare:.1f} s)"),
            "dbt_steps": (extra, f"{extra:+.1f} s ({med['dbt_step']:.1f} s against {med['dbt']:.1f} s)"),
            "column_lineage": (med["lineage"], f"{med['lineage']:.2f} s for {models} models"),
        }
    )


if __name__ == "__main__":
    main()
