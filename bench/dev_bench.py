"""How long `make dev` takes to have every location loaded, against three trivial ones.

Each start is timed from launch until the webserver's GraphQL API reports every location
LOADED (what a person waits for before the UI is usable). Two pairs, run alternately so
that the machine's drift falls on both sides of each ratio:

- `make dev`: `dg dev` on dg.toml, each location from its own environment, against
  `dagster dev` on three trivial one-asset locations, each run by one of those
  environments' python (workspace `executable_path`);
- `dagster dev -w workspace.yaml` (every location from the dev environment) against the
  same three trivial locations in the dev environment.

    python -m bench.dev_bench [--runs 3]        (part of make bench)

Prints medians and writes them to docs/bench/dev_ready.md. Figures only: no assertions.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.figures import provenance, record
from bench.location_load_time import TRIVIAL  # the same floor for both benches
from platform_shared.workspace import locations
from tools import webserver

REPO = Path(__file__).resolve().parents[1]


def trivial_workspace(folder: Path, own_environments: bool) -> Path:
    """A workspace of three one-asset locations (one per real location, same names)."""
    (folder / "trivial.py").write_text(TRIVIAL)
    lines = ["load_from:"]
    for loc in locations(REPO):
        lines += ["  - python_file:", f"      relative_path: {folder / 'trivial.py'}"]
        lines.append(f"      location_name: {loc.name}")
        if own_environments:
            lines.append(f"      executable_path: {REPO / loc.path / '.venv' / 'bin' / 'python'}")
    path = folder / ("trivial_own.yaml" if own_environments else "trivial_dev.yaml")
    path.write_text("\n".join(lines) + "\n")
    return path


def ready_seconds(workspace: Path | None, home: Path, log: Path) -> float:
    """Seconds from launch until every location loaded (workspace None: `dg dev`)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    started = time.perf_counter()
    with webserver.dagster_dev({"DAGSTER_HOME": str(home)}, log, workspace=workspace):
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pairs = {
            "make dev (dg dev, each location's own environment)": (None, trivial_workspace(folder, True)),
            "dagster dev -w workspace.yaml (dev environment)": (
                REPO / "workspace.yaml",
                trivial_workspace(folder, False),
            ),
        }
        times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in pairs}
        for run in range(args.runs):
            for name, (real, trivial) in pairs.items():
                for i, workspace in enumerate((real, trivial)):
                    seconds = ready_seconds(workspace, folder / f"home_{run}_{i}", folder / "dev.log")
                    times[name][i].append(seconds)
                    print(f"  {name}: {'trivial' if i else 'platform'} {seconds:.1f} s", flush=True)
    header = f"{'start':<52}{'platform s':>12}{'trivial s':>11}{'ratio':>7}"
    rows = [header, "-" * len(header)]
    for name, (real, trivial) in times.items():
        real_s, trivial_s = statistics.median(real), statistics.median(trivial)
        rows.append(f"{name:<52}{real_s:>12.1f}{trivial_s:>11.1f}{real_s / trivial_s:>7.2f}")
    table = "\n".join(rows)
    print("\n" + table)
    out = REPO / "docs" / "bench" / "dev_ready.md"
    out.write_text(
        f"# `make dev` ready, against three trivial locations\n\nWritten by `python -m bench.dev_bench "
        f"--runs {args.runs}` on {provenance()}; medians of {args.runs} starts each, "
        "the two sides of each ratio run alternately. See bench/dev_bench.py.\n\n```\n" + table + "\n```\n"
    )
    print(f"wrote {out.relative_to(REPO)}")
    real, trivial = (statistics.median(side) for side in times[next(iter(pairs))])
    reads = f"{real / trivial:.2f} ({real:.1f} s against {trivial:.1f} s, medians of {args.runs} starts)"
    record({"make_dev": (real / trivial, reads)})


if __name__ == "__main__":
    main()
