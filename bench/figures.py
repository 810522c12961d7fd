"""The figures docs/performance.md opens with, recorded by the benches that print them.

Each bench calls ``record`` with what it printed: a figure's value and how it reads, the
command that printed it (with its arguments) and when, at which commit, on how many
cores (``provenance``). They are kept in docs/bench/figures.json, one entry per figure
(the latest run of each), and the table at the top of docs/performance.md is rewritten
from that file, between the two markers: no figure of it is typed by hand, and whether a
target is met is computed, not written (tests/test_bench_figures.py compares the page
with the file).

    python -m bench.figures     (rewrites the table from docs/bench/figures.json)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "bench" / "figures.json"
PAGE = ROOT / "docs" / "performance.md"
BEGIN = "<!-- the figures: written by python -m bench.figures from docs/bench/figures.json -->"
END = "<!-- end of the figures -->"

# Each figure of the table, in its order: what it measures, and its target (the figure's
# "value" against a bound; None: no target).
ROWS = {
    "make_dev": ("`make dev`: every location loaded, against three trivial locations", ("at most", 1.3)),
    "warm_make_run": ("warm `make run`, against its bare steps", ("at most", 2.0)),
    "dbt_steps": ("dbt steps in `make run`, over plain `dbt build` (seconds)", ("at most", 2.0)),
    "column_lineage": (
        "column lineage of every dbt model, in `make run`'s dbt steps (seconds; no SQL parsed at location "
        "load: `python -m bench.location_load_time`)",
        ("at most", 1.0),
    ),
    "make_test": ("`make test` on a clean clone, with CI's variables (minutes)", ("at most", 10.0)),
    "make_ingest": ("`make ingest` at scale 100, against the raw copy (whole commands)", ("at least", 0.5)),
    "make_ingest_tpch": (
        "`make ingest` on TPC-H lineitem and orders (decimals, dates), against the raw copy (whole commands)",
        ("at least", 0.5),
    ),
    "reconcile_duckdb": ("reconcile at scale 100, 1% differing, DuckDB: of a full load", ("at most", 0.5)),
    "reconcile_postgres": ("reconcile at scale 100, 1% differing, PostgreSQL: of a full load", ("at most", 0.5)),
    "reingest_duckdb": ("re-ingest at scale 100, 1% changed, DuckDB: of a full load", None),
    "reingest_postgres": ("re-ingest at scale 100, 1% changed, PostgreSQL: of a full load", None),
}


def provenance(*, commit: str | None = None) -> str:
    """When, at which commit (this checkout's HEAD, and whether with uncommitted changes;
    or ``commit``, what was measured, such as a clone's), on how many cores."""
    if commit is None:
        head = ["git", "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(head, cwd=ROOT, capture_output=True, text=True).stdout.strip() or "unknown"
        # What the benches write themselves is not a change of what they measure.
        written = ("docs/bench/", "docs/performance.md")
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.splitlines()
        if [line for line in status if not line[3:].startswith(written)]:
            commit += " with uncommitted changes"
    return f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, {os.cpu_count()} cores"


def record(figures: dict[str, tuple[float, str]], *, printed_by: str | None = None, commit: str | None = None) -> None:
    """Keep ``figures`` (name: its value, and how it reads) in docs/bench/figures.json as
    printed by ``printed_by`` (this process's command by default) now, then rewrite the
    table of docs/performance.md. ``commit``: the commit measured, when it is not this
    checkout's working tree (a clone's)."""
    kept = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    this = f"python -m bench.{Path(sys.argv[0]).stem} {' '.join(sys.argv[1:])}".strip()
    where = {"command": printed_by or this, "provenance": provenance(commit=commit)}
    for name, (value, reads) in figures.items():
        if name not in ROWS:
            raise ValueError(f"figure {name!r} is not one of docs/performance.md's ({', '.join(ROWS)})")
        kept[name] = {"value": round(value, 2), "reads": reads, **where}
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")
    write_page()


def table(kept: dict) -> str:
    """The table of the figures in ``kept`` (the content of docs/bench/figures.json)."""
    lines = ["| measures | figure | target | printed by |", "|---|---|---|---|"]
    for name, (what, target) in ROWS.items():
        if name not in kept:
            continue
        figure = kept[name]
        if target is None:
            aim = "none set"
        else:
            side, bound = target
            met = figure["value"] <= bound if side == "at most" else figure["value"] >= bound
            aim = f"{side} {bound:g}: {'met' if met else '**missed**'}"
        lines.append(f"| {what} | {figure['reads']} | {aim} | `{figure['command']}` ({figure['provenance']}) |")
    return "\n".join(lines)


def write_page() -> None:
    """Rewrite the table between the markers of docs/performance.md."""
    page = PAGE.read_text()
    head, _, rest = page.partition(BEGIN)
    _, found, tail = rest.partition(END)
    if not found:
        raise SystemExit(f"{PAGE}: the markers of the figures' table are missing ({BEGIN!r} ... {END!r})")
    PAGE.write_text(f"{head}{BEGIN}\n{table(json.loads(FIGURES.read_text()))}\n{END}{tail}")


if __name__ == "__main__":
    write_page()
