"""The global asset graph across code locations, read from the Dagster webserver's GraphQL API.

`make check`, `make impact` and the alerts use it. Each location sees only its own assets
(and grey stubs for keys it depends on); the webserver holds all of them. Reading its
public GraphQL API keeps every location from importing another and from relying on
Dagster's private modules. Plain urllib: the shared library needs no HTTP client for one
POST.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

GRAPH_QUERY = """
{ workspaceOrError {
    __typename
    ... on PythonError { message }
    ... on Workspace { locationEntries {
      name
      locationOrLoadError {
        __typename
        ... on PythonError { message causes { message } }
        ... on RepositoryLocation { repositories { assetNodes {
          assetKey { path }
          dependencyKeys { path }
          isAutoCreatedStub
          kinds
          owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
          assetMaterializations(limit: 1) { timestamp runId }
          assetChecksOrError { ... on AssetChecks { checks {
            name blocking executionForLatestMaterialization { status }
          } } }
          freshnessStatusInfo { freshnessStatus }
        } } }
      }
    } }
} }
"""


class GraphUnavailable(RuntimeError):
    """The webserver could not be reached or answered with an error."""


@dataclass(frozen=True)
class Node:
    """One asset as one code location defines it (or stubs it)."""

    key: str
    location: str
    deps: tuple[str, ...]
    kinds: tuple[str, ...]
    owners: tuple[str, ...]
    stub: bool  # created by Dagster for a key the location depends on but does not define
    last_materialized: str | None = None  # ISO 8601, UTC
    failing_checks: tuple[str, ...] = ()
    freshness: str | None = None

    @property
    def role(self) -> str:
        """What the asset is, for people: dashboard, dbt model, ML model or table."""
        if "dashboard" in self.kinds:
            return "dashboard"
        if "dbt" in self.kinds:
            return "dbt model"
        if "scikitlearn" in self.kinds:
            return "ML model"
        return "table"


@dataclass
class Graph:
    nodes: list[Node]
    load_errors: dict[str, str] = field(default_factory=dict)  # location -> error message

    def definitions(self) -> dict[str, list[Node]]:
        """Every defined (non-stub) key with the nodes defining it: more than one is a clash."""
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            if not n.stub:
                out.setdefault(n.key, []).append(n)
        return out

    def downstream(self, key: str) -> list[Node]:
        """Every defined asset downstream of ``key``, in any location, sorted by location and key."""
        defined = [n for n in self.nodes if not n.stub]
        found: dict[str, Node] = {}
        frontier = {key}
        while frontier:
            hit = [n for n in defined if n.key not in found and frontier & set(n.deps)]
            found |= {n.key: n for n in hit}
            frontier = {n.key for n in hit}
        found.pop(key, None)
        return sorted(found.values(), key=lambda n: (n.location, n.key))


def graphql(url: str, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
    """POST a query to ``<url>/graphql`` and return its data, raising GraphUnavailable."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.load(response)
    except OSError as exc:  # connection refused, timeout, HTTP error
        raise GraphUnavailable(f"the Dagster webserver at {url} did not answer: {exc}") from exc
    if body.get("errors"):
        raise GraphUnavailable(f"the Dagster webserver at {url} answered with errors: {body['errors']}")
    return body["data"]


def _path(key: dict) -> str:
    return "/".join(key["path"])


def _iso(timestamp_ms: str | float | None) -> str | None:
    if timestamp_ms is None:
        return None
    return datetime.fromtimestamp(float(timestamp_ms) / 1000, tz=UTC).isoformat(timespec="seconds")


def _node(raw: dict, location: str) -> Node:
    checks = raw.get("assetChecksOrError") or {}
    failing = tuple(
        c["name"]
        for c in checks.get("checks", [])
        if (c.get("executionForLatestMaterialization") or {}).get("status") in ("FAILED", "EXECUTION_FAILED")
    )
    materializations = raw.get("assetMaterializations") or []
    return Node(
        key=_path(raw["assetKey"]),
        location=location,
        deps=tuple(_path(d) for d in raw["dependencyKeys"]),
        kinds=tuple(sorted(raw["kinds"])),
        owners=tuple(o.get("team") and f"team:{o['team']}" or o.get("email", "") for o in raw["owners"]),
        stub=raw["isAutoCreatedStub"],
        last_materialized=_iso(materializations[0]["timestamp"]) if materializations else None,
        failing_checks=failing,
        freshness=(raw.get("freshnessStatusInfo") or {}).get("freshnessStatus"),
    )


def fetch_graph(url: str) -> Graph:
    """The global graph as the webserver at ``url`` has loaded it."""
    workspace: dict[str, Any] = graphql(url, GRAPH_QUERY)["workspaceOrError"]
    if workspace["__typename"] != "Workspace":
        raise GraphUnavailable(f"the workspace did not load: {workspace.get('message')}")
    graph = Graph(nodes=[])
    for entry in workspace["locationEntries"]:
        loaded: dict[str, Any] = entry["locationOrLoadError"] or {
            "__typename": "PythonError",
            "message": "still loading",
        }
        if loaded["__typename"] != "RepositoryLocation":
            # The root cause (the user's own exception) says more than Dagster's wrapper.
            causes = [c["message"] for c in loaded.get("causes") or []]
            graph.load_errors[entry["name"]] = (causes or [loaded.get("message", loaded["__typename"])])[-1]
            continue
        for repository in loaded["repositories"]:
            graph.nodes += [_node(raw, entry["name"]) for raw in repository["assetNodes"]]
    return graph


def impact(graph: Graph, key: str) -> dict:
    """Every asset downstream of ``key`` across locations, grouped by location, with a summary."""
    defined = graph.definitions().get(key)
    if not defined:
        raise KeyError(f"no code location defines the asset {key!r}")
    hit = graph.downstream(key)
    locations: dict[str, list[dict]] = {}
    for n in hit:
        locations.setdefault(n.location, []).append(
            {k: v for k, v in asdict(n).items() if k not in ("location", "deps", "stub")} | {"role": n.role}
        )
    roles = Counter(n.role for n in hit)
    teams = sorted({o.removeprefix("team:") for n in hit for o in n.owners if o.startswith("team:")})
    parts = [f"{count} {role}{'s' if count > 1 else ''}" for role, count in sorted(roles.items())]
    summary = (
        f"{key}: {len(hit)} assets downstream in {len(locations)} location{'s' if len(locations) != 1 else ''}"
        + (f" ({', '.join(parts)})" if parts else "")
        + (f", teams: {', '.join(teams)}" if teams else "")
        # A location that failed to load hides its assets: never report a partial list as whole.
        + (f"; INCOMPLETE, not loaded: {', '.join(sorted(graph.load_errors))}" if graph.load_errors else "")
    )
    return {
        "asset": key,
        "location": defined[0].location,
        "downstream": locations,
        "count": len(hit),
        "roles": dict(roles),
        "teams": teams,
        "summary": summary,
        "locations_not_loaded": graph.load_errors,
    }


def _state(asset: dict) -> str:
    if asset["role"] == "dashboard":
        state = "external, reads the marts above"
    else:
        state = f"materialized {asset['last_materialized']}" if asset["last_materialized"] else "never materialized"
    if asset["failing_checks"]:
        state += f", failing checks: {', '.join(asset['failing_checks'])}"
    if asset["freshness"] and asset["freshness"] not in ("HEALTHY", "UNKNOWN", "NOT_APPLICABLE"):
        state += f", freshness {asset['freshness'].lower()}"
    return state


def _by_location(title: str, downstream: dict[str, list[dict]], last) -> list[str]:
    """One aligned block per location: key, role, owners, then ``last(asset)``."""
    lines = [title]
    for location, assets in downstream.items():
        lines.append(f"\n{location}")
        owners = [",".join(o.removeprefix("team:") for o in a["owners"]) for a in assets]
        key_w, owner_w = max(len(a["key"]) for a in assets), max(map(len, owners))
        for a, owner in zip(assets, owners, strict=True):
            lines.append(f"  {a['key']:<{key_w}}  {a['role']:<9}  {owner:<{owner_w}}  {last(a)}")
    return lines


def format_impact(report: dict) -> str:
    """The impact report as aligned text, one block per location, the summary last."""
    title = f"Downstream of {report['asset']} (defined in {report['location']}):"
    return "\n".join([*_by_location(title, report["downstream"], _state), f"\n{report['summary']}"])


# The columns that choose a table's rows (filters, join conditions, group keys), recorded
# beside its column lineage as a JSON list of {"asset": key, "column": name}
# (platform_shared.column_lineage).
ROW_COLUMNS = "column_lineage_rows"

# Column lineage as assets record it (``dagster/column_lineage``): on their definition
# (dashboards) or on their latest materialization (tables, models); and the columns of
# each table (``dagster/column_schema``) to check the column asked about.
COLUMNS_QUERY = """
{ assetNodes {
    assetKey { path }
    metadataEntries { ...lineage }
    assetMaterializations(limit: 1) { metadataEntries {
      ...lineage
      ... on TableSchemaMetadataEntry { label schema { columns { name } } }
      ... on JsonMetadataEntry { label jsonString }
    } }
} }
fragment lineage on TableColumnLineageMetadataEntry {
  label lineage { columnName columnDeps { assetKey { path } columnName } }
}
"""


@dataclass
class Columns:
    """Per asset key: each column with the (asset, column) pairs it reads, the columns of
    its latest materialization, and the (asset, column) pairs that choose its rows
    (filters, joins, group keys: ``column_lineage_rows``). An asset missing from
    ``lineage`` recorded none."""

    lineage: dict[str, dict[str, list[tuple[str, str]]]]
    schema: dict[str, list[str]]
    rows: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def fetch_columns(url: str) -> Columns:
    """Column lineage and columns of every asset, as the webserver at ``url`` reads them from its instance."""
    lineage: dict[str, dict[str, list[tuple[str, str]]]] = {}
    schema: dict[str, list[str]] = {}
    rows: dict[str, list[tuple[str, str]]] = {}
    for node in graphql(url, COLUMNS_QUERY)["assetNodes"]:
        key = _path(node["assetKey"])
        latest = node["assetMaterializations"][0]["metadataEntries"] if node["assetMaterializations"] else []
        for entry in [*node["metadataEntries"], *latest]:
            if entry.get("label") == "dagster/column_lineage":
                lineage[key] = {
                    e["columnName"]: [(_path(d["assetKey"]), d["columnName"]) for d in e["columnDeps"]]
                    for e in entry["lineage"]
                }
            elif entry.get("label") == "dagster/column_schema":
                schema[key] = [c["name"] for c in entry["schema"]["columns"]]
            elif entry.get("label") == ROW_COLUMNS:
                rows[key] = [(r["asset"], r["column"]) for r in json.loads(entry["jsonString"])]
    return Columns(lineage=lineage, schema=schema, rows=rows)


def column_impact(graph: Graph, columns: Columns, key: str, column: str) -> dict:
    """Every column downstream of ``key``'s ``column`` (read directly or through other
    columns), by location and asset; the assets downstream of ``key`` that read none of
    them (unaffected) and those that recorded no column lineage (not known)."""
    defined = graph.definitions().get(key)
    if not defined:
        raise KeyError(f"no code location defines the asset {key!r}")
    known = columns.schema.get(key)
    if known is not None and column not in known:
        raise KeyError(
            f"{key} has no column {column!r} in its latest materialization (its columns: {', '.join(known)})"
        )
    readers: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (asset, column) -> its readers
    for asset, by_column in columns.lineage.items():
        for out, deps in by_column.items():
            for dep in deps:
                readers.setdefault(dep, []).append((asset, out))
    # A column that chooses an asset's rows (a filter, a join, a group key) hits every column.
    for asset, deps in columns.rows.items():
        for dep in deps:
            readers.setdefault(dep, []).extend((asset, out) for out in columns.lineage.get(asset, {}))
    chosen: dict[str, set[str]] = {}  # asset -> the hit columns that choose its rows
    hit: dict[str, list[str]] = {}
    frontier = [(key, column)]
    seen = set(frontier)
    while frontier:
        for asset, deps in columns.rows.items():
            chosen.setdefault(asset, set()).update(f"{a}.{c}" for a, c in frontier if (a, c) in deps)
        # (once each: two columns of one step may both be read by the same column)
        reader = list(dict.fromkeys(r for dep in frontier for r in readers.get(dep, []) if r not in seen))
        seen |= set(reader)
        frontier = reader
        for asset, out in reader:
            hit.setdefault(asset, []).append(out)
    nodes = {n.key: n for n in graph.downstream(key)}
    locations: dict[str, list[dict]] = {}
    for n in sorted((nodes[a] for a in hit if a in nodes), key=lambda n: (n.location, n.key)):
        locations.setdefault(n.location, []).append(
            {
                "key": n.key,
                "role": n.role,
                "owners": list(n.owners),
                "columns": sorted(hit[n.key]),
                "rows_chosen_by": sorted(chosen.get(n.key, ())),
            }
        )
    unaffected = sorted(k for k in nodes if k not in hit and k in columns.lineage)
    not_known = sorted(k for k in nodes if k not in hit and k not in columns.lineage)
    teams = sorted(
        {o.removeprefix("team:") for a in locations.values() for x in a for o in x["owners"] if o.startswith("team:")}
    )
    count = sum(len(v) for v in hit.values())
    summary = (
        f"{key}.{column}: {count} column{'s' if count != 1 else ''} in {len(hit)} asset{'s' if len(hit) != 1 else ''} "
        f"downstream in {len(locations)} location{'s' if len(locations) != 1 else ''}"
        + (f", teams: {', '.join(teams)}" if teams else "")
        + f"; {len(unaffected)} other downstream asset{'s' if len(unaffected) != 1 else ''} read other columns only"
        + (f"; {len(not_known)} recorded no column lineage: {', '.join(not_known)}" if not_known else "")
        + (f"; INCOMPLETE, not loaded: {', '.join(sorted(graph.load_errors))}" if graph.load_errors else "")
    )
    return {
        "asset": key,
        "column": column,
        "location": defined[0].location,
        "downstream": locations,
        "unaffected": unaffected,
        "no_column_lineage": not_known,
        "teams": teams,
        "summary": summary,
        "locations_not_loaded": graph.load_errors,
    }


def _hit_columns(asset: dict) -> str:
    chosen = asset.get("rows_chosen_by")
    return ", ".join(asset["columns"]) + (f" (every row: chosen by {', '.join(chosen)})" if chosen else "")


def format_column_impact(report: dict) -> str:
    """The column impact report as aligned text, one block per location, the summary last."""
    title = f"Downstream of {report['asset']}.{report['column']} (defined in {report['location']}):"
    lines = _by_location(title, report["downstream"], _hit_columns)
    if report["unaffected"]:
        lines.append(f"\nUnaffected (read other columns only): {', '.join(report['unaffected'])}")
    if report["no_column_lineage"]:
        lines.append(f"Not known (no column lineage recorded yet): {', '.join(report['no_column_lineage'])}")
    lines.append(f"\n{report['summary']}")
    return "\n".join(lines)


def column_impact_text(url: str, key: str, columns: list[str]) -> str:
    """What reads each of ``key``'s ``columns`` downstream, in one paragraph for an error
    message or an alert, with the downstream assets that read none of them (unaffected);
    or why that is unknown."""
    try:
        graph, recorded = fetch_graph(url), fetch_columns(url)
    except GraphUnavailable as exc:
        return f"Its column impact is unavailable: {exc}"
    parts, unaffected, unknown, read = [], None, set(), []
    for column in columns:
        try:
            report = column_impact(graph, recorded, key, column)
        except KeyError as exc:
            parts.append(f"{key}.{column}: {exc.args[0]}.")
            continue
        if report["downstream"]:
            read.append(column)
        readers = "; ".join(
            f"{location}: " + ", ".join(f"{a['key']} ({_hit_columns(a)})" for a in assets)
            for location, assets in report["downstream"].items()
        )
        parts.append(f"Downstream of {key}.{column}: {readers or 'nothing reads it'}.")
        unaffected = set(report["unaffected"]) if unaffected is None else unaffected & set(report["unaffected"])
        unknown |= set(report["no_column_lineage"])
    if unaffected:
        parts.append(f"Unaffected (read other columns only): {', '.join(sorted(unaffected))}.")
    elif read and not unknown:
        parts.append(f"Unaffected: none (every asset downstream of {key} reads {' or '.join(read)}).")
    if unknown:
        parts.append(f"Not known (no column lineage recorded yet): {', '.join(sorted(unknown))}.")
    return " ".join(parts)
