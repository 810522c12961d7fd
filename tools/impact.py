"""`make impact ASSET=raw/orders [FORMAT=json]`: what a failure of one asset hits, everywhere.

Every asset downstream of ASSET across all code locations, grouped by location, with its
role (dashboard, dbt model, ML model, table), its owners and its state in the instance of
DAGSTER_HOME (last materialization, failing checks, freshness), then a one-line summary.

Reads the webserver at DAGSTER_WEBSERVER_URL when one answers there (`make dev`),
otherwise starts one on workspace.yaml for the time of the query.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from platform_shared import load_settings
from platform_shared.lineage import GraphUnavailable, fetch_graph, format_impact, impact
from tools.webserver import REPO, webserver


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("asset", help="asset key, for example raw/orders")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument("--workspace", type=Path, default=REPO / "workspace.yaml")
    args = parser.parse_args()
    try:
        graph = fetch_graph(load_settings().webserver_url)
    except GraphUnavailable:
        with webserver(args.workspace) as url:
            graph = fetch_graph(url)
    try:
        report = impact(graph, args.asset.strip("/"))
    except KeyError as exc:
        known = sorted(graph.definitions())
        print(f"error: {exc.args[0]}; known assets: {', '.join(known)}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.format == "json" else format_impact(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
