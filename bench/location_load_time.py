"""How long each code location takes to load, against a trivial one-asset location.

Each measurement is a fresh interpreter that imports the location's module and builds
its Definitions (what a code server does on start), timed from interpreter start, so
`import dagster` (seconds on these cores) is in both. Each location loads in its own
environment (<location>/.venv, `make envs`), as a team deploys it, and the trivial
location is timed in that same environment; `--dev` loads all in the dev environment
instead. Prints the median of N runs, and what the column lineage costs a location's load:
its modules are imported (their import time, from `python -X importtime`), never run: the
lineage is computed in the steps that build the tables (the dbt step logs its seconds,
which `python -m bench.run_bench` records), not when a location loads. sqlglot itself is
imported at load by dagster-dbt (through Dagster's component registry), in every location.

    python -m bench.location_load_time [--runs 5] [--dev]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from platform_shared.workspace import locations

REPO = Path(__file__).resolve().parents[1]

TRIVIAL = """
import dagster as dg

@dg.asset
def one_asset() -> None:
    return None

defs = dg.Definitions(assets=[one_asset])
"""

PROBE = """
import time, sys
t0 = time.perf_counter()
{load}
defs = defs() if callable(defs) else defs
defs.resolve_asset_graph()
print(time.perf_counter() - t0)
"""

TRIVIAL_LOAD = f"exec(compile({TRIVIAL!r}, 'trivial', 'exec'))"
LOCATIONS = {loc.name: loc.defs_import for loc in locations(REPO)}


def measure(python: str, load: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [python, "-c", PROBE.format(load=load)], cwd=REPO, capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def lineage_import_ms(python: str, load: str) -> float:
    """Milliseconds spent importing the column-lineage modules (``*.column_lineage``)
    while the location loads: their own import time, as `-X importtime` reports it."""
    out = subprocess.run(
        [python, "-X", "importtime", "-c", PROBE.format(load=load)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    micros = 0
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and line.rsplit("|", 1)[-1].strip().endswith("column_lineage"):
            micros += int(line.split(":", 1)[1].split("|")[0])
    return micros / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dev", action="store_true", help="load every location in the dev environment")
    args = parser.parse_args()
    print(
        f"{'location':<16}{'environment':<26}{'trivial s':>10}{'load s':>10}{'over trivial s':>16}"
        f"{'lineage imports ms':>20}"
    )
    for name, load in LOCATIONS.items():
        own = REPO / name / ".venv" / "bin" / "python"
        python = sys.executable if args.dev or not own.exists() else str(own)
        trivial, seconds = measure(python, TRIVIAL_LOAD, args.runs), measure(python, load, args.runs)
        where = Path(python).parent.parent.relative_to(REPO) if Path(python).is_relative_to(REPO) else python
        lineage = lineage_import_ms(python, load)
        print(f"{name:<16}{str(where):<26}{trivial:>10.2f}{seconds:>10.2f}{seconds - trivial:>16.2f}{lineage:>20.1f}")


if __name__ == "__main__":
    main()
