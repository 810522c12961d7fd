"""How long each code location takes to load, against a trivial one-asset location.

Each measurement is a fresh interpreter that imports the location's module and builds
its Definitions (what a code server does on start), timed from interpreter start, so
`import dagster` (seconds on these cores) is in both. Prints the median of N runs.

    python bench/location_load_time.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

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

LOCATIONS = {
    "trivial (one asset)": "exec(compile({src!r}, 'trivial', 'exec'))".format(src=TRIVIAL),
    "ingestion": "from platform_ingestion.definitions import defs",
    "analytics_dbt": "from platform_analytics.definitions import defs",
    "ml_features": "from platform_ml.definitions import defs",
}


def measure(load: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE.format(load=load)],
                             capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = {name: measure(load, args.runs) for name, load in LOCATIONS.items()}
    base = results["trivial (one asset)"]
    print(f"{'location':<22}{'load s (median)':>16}{'over trivial s':>16}")
    for name, seconds in results.items():
        print(f"{name:<22}{seconds:>16.2f}{seconds - base:>16.2f}")


if __name__ == "__main__":
    main()
