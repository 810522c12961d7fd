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
_LOAD_MODES = ("full", "incremental")
_TABLE_KEYS = {"source", "warehouse_name", "primary_key", "load", "cursor", "description"}
_TOP_KEYS = {"tables", "defaults"}


@dataclass(frozen=True)
class CatalogTable:
    source: str
    warehouse_name: str
    primary_key: tuple[str, ...]
    load: LoadMode = "full"
    cursor: str | None = None
    description: str = ""


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


def _parse_table(path: Path, i: int, raw: object) -> CatalogTable:
    if not isinstance(raw, dict) or not isinstance(raw.get("source"), str):
        raise _fail(path, f"tables[{i}]", "each entry needs a 'source' table name (a string)")
    where = f"table {raw['source']!r}"
    unknown = set(raw) - _TABLE_KEYS
    if unknown:
        raise _fail(
            path, where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_TABLE_KEYS)}"
        )
    pk = raw.get("primary_key") or []
    pk = [pk] if isinstance(pk, str) else list(pk)
    load = raw.get("load", "full")
    if load not in _LOAD_MODES:
        raise _fail(path, where, f"load is {load!r}; expected one of {list(_LOAD_MODES)}")
    if load == "incremental" and not pk:
        raise _fail(path, where, "an incremental table needs a primary_key to merge on")
    if load == "incremental" and not raw.get("cursor"):
        raise _fail(path, where, "an incremental table needs a cursor column (e.g. updated_at)")
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
        description=raw.get("description", ""),
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
    tables = tuple(_parse_table(path, i, t) for i, t in enumerate(doc["tables"]))
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
