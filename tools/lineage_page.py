"""`make lineage-page [ASSET=raw/customers] [COLUMN=country]`: the column lineage across the
three locations as one self-contained HTML page (data/lineage.html), opened in any browser.

Open-source Dagster stores ``dagster/column_lineage`` but draws it only in Dagster+. This
page draws what the assets recorded in the instance (read from the webserver's GraphQL,
as `make impact` does): pick an asset, or one of its columns, and it shows every column
upstream and downstream of it, one card per asset, one column of cards per depth, colour
per location. A column that chooses a table's rows (a filter, a join or group key) hits
every column of that table, as in `make impact`: those edges are dashed. The page's
address carries the choice (``lineage.html#raw/customers#country``).
Written by hand: no graph library is installed, and the page must open offline.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from platform_shared import load_settings
from platform_shared.lineage import GraphUnavailable, fetch_columns, fetch_graph
from tools.webserver import REPO, webserver

# The page: plain HTML and script, the data in place of __DATA__.
PAGE = Path(__file__).with_suffix(".html")


def page(url: str, start: str) -> str:
    """The page's HTML, with the graph and the column lineage the webserver at ``url`` reads."""
    graph, columns = fetch_graph(url), fetch_columns(url)
    assets = {
        n.key: {
            "location": n.location,
            "role": n.role,
            "columns": columns.schema.get(n.key, []),
            "lineage": columns.lineage.get(n.key, {}),
            "rows": columns.rows.get(n.key, []),  # the (asset, column) pairs that choose its rows
        }
        for n in graph.nodes
        if not n.stub
    }
    data = json.dumps({"assets": assets, "start": start}).replace("</", "<\\/")
    return PAGE.read_text().replace("__DATA__", data)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--asset", help="the asset to start from (default: raw/customers, column country)")
    parser.add_argument("--column", help="one of its columns (default: all of them)")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "lineage.html")
    parser.add_argument("--workspace", type=Path, default=REPO / "workspace.yaml")
    args = parser.parse_args()
    asset, column = (args.asset.strip("/"), args.column) if args.asset else ("raw/customers", "country")
    start = f"{asset}#{column}" if column else asset
    try:
        html = page(load_settings().webserver_url, start)
    except GraphUnavailable:
        with webserver(args.workspace) as url:
            html = page(url, start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(html)
    print(f"wrote {args.out} (open it in a browser; its address picks the asset: #raw/customers#country)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
