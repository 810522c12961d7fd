"""`make check`: the contract of the global asset graph, over every location of workspace.yaml.

Starts the real Dagster webserver on the workspace (as `make dev` does, with the current
settings: INGESTION_CATALOG and the rest) and reads its GraphQL API. Errors:

- a code location that fails to load;
- an asset that depends on a key no location defines (Dagster shows such a key as a grey,
  unmaterializable stub and `dagster definitions validate` accepts it);
- a key defined by two locations;
- an asset without a known team among its owners, or with a team owner that is not known
  (people, as email owners, may be added beside a team);
- a column that reads a column its upstream asset does not have: column lineage as the
  assets recorded it in the instance (``dagster/column_lineage``: dbt models, ML features,
  dashboards' declared mart columns) against the columns of each upstream asset's latest
  materialization, or that the catalog no longer loads (``columns.exclude``/``select``):
  an excluded raw column fails the check before the next load;
- a dbt model whose SQL, compiled now, reads a column its inputs will not have: the raw
  tables as the catalog loads them from the source, and the models before it
  (``column_contract.py``), so a new model fails before it ever ran.

Warning: a catalog table that nothing downstream reads.

Exit status 1 on any error. `--url` checks a webserver that is already running.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.exc import OperationalError

from platform_shared import TEAMS, CatalogTable, load_catalog, load_settings, raw_asset_key
from platform_shared.lineage import Columns, Graph, fetch_columns, fetch_graph
from tools import column_contract
from tools.webserver import REPO, webserver


def problems(graph: Graph, catalog_tables: list[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of the graph, each naming the key and the location."""
    errors = [f"location {loc} failed to load: {' '.join(msg.split())[:600]}" for loc, msg in graph.load_errors.items()]
    defined = graph.definitions()
    for node in graph.nodes:
        if node.stub and node.key not in defined:
            users = sorted(n.key for n in graph.nodes if n.location == node.location and node.key in n.deps)
            errors.append(
                f"{node.key}: no location defines it, yet {node.location} depends on it (from {', '.join(users)})"
            )
    for key, nodes in defined.items():
        if len(nodes) > 1:
            errors.append(f"{key}: defined by more than one location ({', '.join(n.location for n in nodes)})")
    for node in (n for nodes in defined.values() for n in nodes):
        teams = [o for o in node.owners if o.startswith("team:")]
        unknown = [t for t in teams if t not in TEAMS]
        if unknown:
            errors.append(
                f"{node.key} ({node.location}): owner {', '.join(unknown)} is not a known team ({', '.join(TEAMS)})"
            )
        elif not teams:
            errors.append(
                f"{node.key} ({node.location}): no team among its owners "
                f"({', '.join(node.owners) or 'none'}); add one of {', '.join(TEAMS)}"
            )
    warnings = [
        f"{key}: catalog table with no downstream consumer in any location"
        for key in catalog_tables
        if key in defined and not graph.downstream(key)
    ]
    return errors, warnings


def not_loaded(tables: Iterable[CatalogTable], columns: Columns, catalog: Path) -> dict[str, dict[str, str]]:
    """Per raw asset, the columns of its latest load that the catalog no longer loads, and why."""
    out: dict[str, dict[str, str]] = {}
    for t in tables:
        key = raw_asset_key(t.warehouse_name).to_user_string()
        for column in columns.schema.get(key, []):
            if not t.columns.loads(column):
                which = "columns.exclude" if column in t.columns.exclude else "not in columns.select"
                out.setdefault(key, {})[column] = f"{which} of {t.source!r} in {catalog}"
    return out


def column_problems(graph: Graph, columns: Columns, excluded: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Columns that read an upstream column the upstream asset's latest materialization
    lacks, or that the catalog (``excluded``, from ``not_loaded``) no longer loads."""
    location = {key: nodes[0].location for key, nodes in graph.definitions().items()}
    errors = []
    for key, by_column in sorted(columns.lineage.items()):
        for column, deps in by_column.items():
            for upstream, name in deps:
                where = f"{key} ({location.get(key, '?')}): column {column} reads {upstream}.{name}, which"
                have = columns.schema.get(upstream)
                why = (excluded or {}).get(upstream, {}).get(name)
                if why:
                    errors.append(f"{where} the catalog does not load ({why})")
                elif have is not None and name not in have:
                    owner = location.get(upstream, "?")
                    errors.append(f"{where} {upstream} ({owner}) does not have in its latest materialization")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, default=REPO / "workspace.yaml")
    parser.add_argument("--url", help="check a running webserver instead of starting one")
    args = parser.parse_args()
    started = time.perf_counter()
    settings = load_settings()
    tables = load_catalog(settings.catalog_path).tables
    catalog = [raw_asset_key(t.warehouse_name).to_user_string() for t in tables]
    if args.url:
        graph, columns = fetch_graph(args.url), fetch_columns(args.url)
    else:
        with webserver(args.workspace) as url:
            graph, columns = fetch_graph(url), fetch_columns(url)
    errors, warnings = problems(graph, catalog)
    errors += column_problems(graph, columns, not_loaded(tables, columns, settings.catalog_path))
    try:  # before any run: the dbt models' SQL against the raw columns the catalog will load
        errors += column_contract.problems(tables, settings.source_database_url)
    except OperationalError as exc:
        warnings.append(f"the column contract before any run was not checked: the source did not answer ({exc})")
    except RuntimeError as exc:  # dbt compile failed: the project itself is broken
        errors.append(f"analytics_dbt: {exc}")
    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    locations = sorted({n.location for n in graph.nodes} | set(graph.load_errors))
    assets = len(graph.definitions())
    verdict = f"FAILED: {len(errors)} errors" if errors else "OK"
    print(
        f"{verdict}, {len(warnings)} warnings: {assets} assets in {len(locations)} locations "
        f"({', '.join(locations)}), catalog {settings.catalog_path}, {time.perf_counter() - started:.1f}s"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
