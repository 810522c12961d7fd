"""`make impact ASSET=raw/orders [COLUMN=status] [FORMAT=json]`: what a failure of one asset
(or one of its columns) hits, everywhere.

Every asset downstream of ASSET across all code locations, grouped by location, with its
role (dashboard, dbt model, ML model, table), its owners and its state in the instance of
DAGSTER_HOME (last materialization, failing checks, freshness), then a one-line summary.

With COLUMN: every downstream column that reads it, directly or through other columns, by
location and asset with owners, from the column lineage the assets recorded in the
instance (``dagster/column_lineage``); the downstream assets that read other columns only;
and those that recorded none (never materialized).

Reads the webserver at DAGSTER_WEBSERVER_URL when one answers there (`make dev`),
otherwise starts one on workspace.yaml for the time of the query.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from platform_shared import load_settings
from platform_shared.lineage import (
    GraphUnavailable,
    column_impact,
    fetch_columns,
    fetch_graph,
    format_column_impact,
    format_impact,
    impact,
)
from tools.webserver import REPO, webserver


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("asset", help="asset key, for example raw/orders")
    parser.add_argument("--column", help="a column of the asset, for example country")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument("--workspace", type=Path, default=REPO / "workspace.yaml")
    args = parser.parse_args()
    key = args.asset.strip("/")
    try:
        graph, columns = _read(load_settings().webserver_url, args.column)
    except GraphUnavailable:
        with webserver(args.workspace) as url:
            graph, columns = _read(url, args.column)
    if key not in graph.definitions():
        known = sorted(graph.definitions())
        print(f"error: no code location defines the asset {key!r}; known assets: {', '.join(known)}", file=sys.stderr)
        return 2
    try:
        report = column_impact(graph, columns, key, args.column) if columns else impact(graph, key)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    text = format_column_impact if columns else format_impact
    print(json.dumps(report, indent=2) if args.format == "json" else text(report))
    return 0


def _read(url: str, column: str | None):
    return fetch_graph(url), fetch_columns(url) if column else None


if __name__ == "__main__":
    sys.exit(main())
