"""The catalog of source tables: one entry per table that ingestion loads.

The file is owned by the ingestion team (``ingestion/catalog.yml`` by default,
``INGESTION_CATALOG`` to override); every location reads it through this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from .errors import CatalogError

LoadMode = Literal["full", "incremental"]
History = Literal["none", "scd2"]
DropPolicy = Literal["fail", "ignore"]
_LOAD_MODES = ("full", "incremental")
_HISTORY = ("none", "scd2")
_DROP_POLICIES = ("fail", "ignore")
# Settings a table may take from the catalog's `defaults:` block.
_DEFAULTS = {
    "freshness_hours": 2.0,
    "schedule": "0 * * * *",
    # When every row is compared with the source and repaired (the matches_source check).
    "reconcile_schedule": "30 3 * * *",
    "owner": "team:platform",
    "overlap_minutes": 15,
    "on_column_dropped": "fail",
    # Rows per extracted batch: memory stays flat however large the table grows.
    "chunk_rows": 100_000,
}
_TABLE_KEYS = {
    "source", "schema", "warehouse_name", "primary_key", "load", "cursor", "history", "columns",
    "description", "comment", *_DEFAULTS,
}
_COLUMN_KEYS = {"select", "exclude", "hash"}
_TOP_KEYS = {"tables", "defaults"}


@dataclass(frozen=True)
class ColumnPolicy:
    """Which source columns land in the warehouse, and which are hashed (personal data)."""

    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()


@dataclass(frozen=True)
class CatalogTable:
    source: str
    warehouse_name: str
    primary_key: tuple[str, ...]
    load: LoadMode = "full"
    cursor: str | None = None
    history: History = "none"
    columns: ColumnPolicy = ColumnPolicy()
    description: str = ""
    freshness_hours: float = 2.0
    schedule: str = "0 * * * *"
    reconcile_schedule: str = "30 3 * * *"
    owner: str = "team:platform"
    overlap_minutes: int = 15
    on_column_dropped: DropPolicy = "fail"
    chunk_rows: int = 100_000
    # The source schema (PostgreSQL: other than the connection's search path); None: default.
    schema: str | None = None


@dataclass(frozen=True)
class Catalog:
    path: Path
    tables: tuple[CatalogTable, ...]

    def table(self, warehouse_name: str) -> CatalogTable:
        for t in self.tables:
            if t.warehouse_name == warehouse_name:
                return t
        raise CatalogError(
            f"{self.path}: no table with warehouse name {warehouse_name!r}; "
            f"known: {', '.join(t.warehouse_name for t in self.tables)}"
        )


def safe_name(name: str) -> str:
    """Normalize a source table or column name to safe snake_case.

    Example:
        >>> safe_name('Order Items')
        'order_items'
        >>> safe_name('2024 "Sales"')
        't_2024_sales'
    """
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    s = re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_").lower()
    if not s:
        s = "table"
    return f"t_{s}" if s[0].isdigit() else s


def _fail(path: Path, where: str, what: str) -> CatalogError:
    return CatalogError(f"{path}: {where}: {what}")


def _names(path: Path, where: str, value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, where, f"{what} must be a column name or a list of column names")
    return tuple(value)


def _columns(path: Path, where: str, raw: object) -> ColumnPolicy:
    if raw is None:
        return ColumnPolicy()
    if not isinstance(raw, dict) or set(raw) - _COLUMN_KEYS:
        raise _fail(path, where, f"columns takes only {sorted(_COLUMN_KEYS)}")
    policy = ColumnPolicy(**{k: _names(path, where, raw.get(k), f"columns.{k}") for k in _COLUMN_KEYS})
    if policy.select and policy.exclude:
        raise _fail(path, where, "columns.select and columns.exclude cannot both be set")
    return policy


def _parse_table(path: Path, i: int, raw: object, defaults: dict) -> CatalogTable:
    if not isinstance(raw, dict) or not isinstance(raw.get("source"), str):
        raise _fail(path, f"tables[{i}]", "each entry needs a 'source' table name (a string)")
    where = f"table {raw['source']!r}"
    unknown = set(raw) - _TABLE_KEYS
    if unknown:
        raise _fail(
            path, where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_TABLE_KEYS)}"
        )
    pk = list(_names(path, where, raw.get("primary_key"), "primary_key"))
    load = raw.get("load", "full")
    if load not in _LOAD_MODES:
        raise _fail(path, where, f"load is {load!r}; expected one of {list(_LOAD_MODES)}")
    if load == "incremental" and not pk:
        raise _fail(path, where, "an incremental table needs a primary_key to merge on")
    if load == "incremental" and not raw.get("cursor"):
        raise _fail(path, where, "an incremental table needs a cursor column (e.g. updated_at)")
    history = raw.get("history", "none")
    if history not in _HISTORY:
        raise _fail(path, where, f"history is {history!r}; expected one of {list(_HISTORY)}")
    if history == "scd2" and not pk:
        raise _fail(path, where, "history: scd2 needs a primary_key to track rows by")
    settings = {**defaults, **{k: raw[k] for k in _DEFAULTS if k in raw}}
    if settings["on_column_dropped"] not in _DROP_POLICIES:
        raise _fail(path, where, f"on_column_dropped must be one of {list(_DROP_POLICIES)}")
    overlap = settings["overlap_minutes"]
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise _fail(path, where, f"overlap_minutes is {overlap!r}; expected a whole number of minutes, 0 or more "
                    "(the window re-read below the last cursor value, for rows committed late)")
    schema = raw.get("schema")
    if schema is not None and (not isinstance(schema, str) or not schema):
        raise _fail(path, where, f"schema is {schema!r}; expected the name of a schema of the source database")
    chunk_rows = settings["chunk_rows"]
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise _fail(path, where, f"chunk_rows is {chunk_rows!r}; expected a positive whole number of rows")
    columns = _columns(path, where, raw.get("columns"))
    missing_pk = [c for c in pk if c in columns.exclude or (columns.select and c not in columns.select)]
    if missing_pk:
        raise _fail(path, where, f"primary key column(s) {missing_pk} must not be excluded")
    hashed_keys = [c for c in columns.hash if c in pk]
    if hashed_keys:
        raise _fail(path, where, f"column(s) {hashed_keys} are part of the primary key and cannot be hashed: "
                    "rows are merged and compared with the source by their key. Remove them from columns.hash "
                    "(or exclude the column and key the table on another one)")
    warehouse_name = raw.get("warehouse_name") or safe_name(raw["source"])
    if safe_name(warehouse_name) != warehouse_name:
        raise _fail(
            path,
            where,
            f"warehouse_name {warehouse_name!r} is not safe snake_case; "
            f"use {safe_name(warehouse_name)!r}",
        )
    return CatalogTable(
        source=raw["source"],
        warehouse_name=warehouse_name,
        primary_key=tuple(pk),
        load=load,
        cursor=raw.get("cursor"),
        history=history,
        columns=columns,
        description=raw.get("description", ""),
        freshness_hours=float(settings["freshness_hours"]),
        schedule=str(settings["schedule"]),
        reconcile_schedule=str(settings["reconcile_schedule"]),
        owner=str(settings["owner"]),
        overlap_minutes=overlap,
        on_column_dropped=settings["on_column_dropped"],
        chunk_rows=chunk_rows,
        schema=schema,
    )


def load_catalog(path: Path) -> Catalog:
    """Read and validate a catalog file.

    Args:
        path: the YAML file (see ``ingestion/catalog.yml``).

    Raises:
        CatalogError: naming the file, the table and what to fix.

    Example:
        >>> from platform_shared.settings import load_settings
        >>> cat = load_catalog(load_settings().catalog_path)
        >>> "orders" in [t.warehouse_name for t in cat.tables]
        True
    """
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise CatalogError(
            f"Catalog file {path} does not exist: set INGESTION_CATALOG to a catalog file, "
            "or write one with `make discover`."
        ) from e
    except yaml.YAMLError as e:
        raise CatalogError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("tables"), list):
        raise CatalogError(f"{path}: expected a mapping with a 'tables' list")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise _fail(path, "top level", f"unknown key(s) {sorted(unknown)}")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - set(_DEFAULTS):
        raise _fail(path, "defaults", f"takes only {sorted(_DEFAULTS)}")
    defaults = {**_DEFAULTS, **defaults}
    tables = tuple(_parse_table(path, i, t, defaults) for i, t in enumerate(doc["tables"]))
    seen: dict[str, str] = {}
    for t in tables:
        if t.warehouse_name in seen:
            raise _fail(
                path,
                f"table {t.source!r}",
                f"maps to warehouse name {t.warehouse_name!r}, as {seen[t.warehouse_name]!r} "
                "does: give one of them another warehouse_name",
            )
        seen[t.warehouse_name] = t.source
    return Catalog(path=path, tables=tables)
