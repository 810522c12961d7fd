"""The catalog of source tables: one entry per table that ingestion loads.

The file is owned by the ingestion team (the raw-tables component file
``ingestion/platform_ingestion/defs/raw_tables/defs.yaml`` by default,
``INGESTION_CATALOG`` to override); every location reads it through this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .errors import CatalogError

LoadMode = Literal["full", "incremental"]
History = Literal["none", "scd2"]
DropPolicy = Literal["fail", "ignore"]
# The type of the ingestion location's raw-tables component; a catalog file is either a
# component file (``type:`` and ``attributes:``) or its attributes alone.
COMPONENT_TYPE = "platform_ingestion.components.RawTables"


def _listed(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _names(value: list[str], info: ValidationInfo) -> list[str]:
    if not all(value):
        raise ValueError(f"{info.field_name} holds an empty column name")
    return value


def _whole(least: int, what: str):
    def check(value: object) -> object:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ValueError(f"expected {what}")
        return value

    return check


_OVERLAP = _whole(
    0, "a whole number of minutes, 0 or more (the window re-read below the last cursor value, for rows committed late)"
)
_CHUNK = _whole(1, "a positive whole number of rows")


# Plain field types (no Annotated constraints): Dagster's components resolve only those.
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableSettings(_Strict):
    """What a table may take from the catalog's ``defaults:`` block."""

    freshness_hours: float = 2.0
    schedule: str = "0 * * * *"
    # When every row is compared with the source and repaired (the matches_source check).
    reconcile_schedule: str = "30 3 * * *"
    owner: str = "team:platform"
    # The window re-read below the last cursor value, for rows committed late.
    overlap_minutes: int = 15
    on_column_dropped: DropPolicy = "fail"
    # Rows per extracted batch: memory stays flat however large the table grows.
    chunk_rows: int = 100_000

    check_overlap = field_validator("overlap_minutes", mode="before")(staticmethod(_OVERLAP))
    check_chunk = field_validator("chunk_rows", mode="before")(staticmethod(_CHUNK))


class ColumnsEntry(_Strict):
    """Which source columns land in the warehouse, and which are hashed (personal data)."""

    # A column name or a list of them (a list once validated).
    select: str | list[str] = []
    exclude: str | list[str] = []
    hash: str | list[str] = []

    as_list = field_validator("select", "exclude", "hash", mode="before")(staticmethod(_listed))
    check_names = field_validator("select", "exclude", "hash")(staticmethod(_names))

    @model_validator(mode="after")
    def _one_of_select_and_exclude(self):
        if self.select and self.exclude:
            raise ValueError("columns.select and columns.exclude cannot both be set")
        return self


class TableEntry(_Strict):
    """One source table, as written in the catalog; unset settings come from ``defaults``."""

    source: str
    # The source schema (PostgreSQL: other than the connection's search path); None: default.
    source_schema: str | None = Field(None, alias="schema")
    warehouse_name: str | None = None
    primary_key: str | list[str] = []  # a column name or a list of them (a list once validated)
    load: LoadMode = "full"
    cursor: str | None = None
    history: History = "none"
    columns: ColumnsEntry = ColumnsEntry()
    description: str = ""
    comment: str | None = None
    freshness_hours: float | None = None
    schedule: str | None = None
    reconcile_schedule: str | None = None
    owner: str | None = None
    overlap_minutes: int | None = None
    on_column_dropped: DropPolicy | None = None
    chunk_rows: int | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    as_list = field_validator("primary_key", mode="before")(staticmethod(_listed))
    check_names = field_validator("primary_key")(staticmethod(_names))
    check_overlap = field_validator("overlap_minutes", mode="before")(staticmethod(_OVERLAP))
    check_chunk = field_validator("chunk_rows", mode="before")(staticmethod(_CHUNK))

    @field_validator("source_schema")
    @staticmethod
    def check_schema(value: str | None) -> str | None:
        if value == "":
            raise ValueError("expected the name of a schema of the source database")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        fail = lambda what: ValueError(f"table {self.source!r}: {what}")  # noqa: E731
        pk, columns = self.primary_key, self.columns
        if self.load == "incremental" and not pk:
            raise fail("an incremental table needs a primary_key to merge on")
        if self.load == "incremental" and not self.cursor:
            raise fail("an incremental table needs a cursor column (e.g. updated_at)")
        if self.history == "scd2" and not pk:
            raise fail("history: scd2 needs a primary_key to track rows by")
        excluded = [c for c in pk if c in columns.exclude or (columns.select and c not in columns.select)]
        if excluded:
            raise fail(f"primary key column(s) {excluded} must not be excluded")
        hashed_keys = [c for c in columns.hash if c in pk]
        if hashed_keys:
            raise fail(
                f"column(s) {hashed_keys} are part of the primary key and cannot be hashed: rows are "
                "merged and compared with the source by their key. Remove them from columns.hash (or "
                "exclude the column and key the table on another one)"
            )
        if self.warehouse_name is not None and safe_name(self.warehouse_name) != self.warehouse_name:
            raise fail(
                f"warehouse_name {self.warehouse_name!r} is not safe snake_case; use {safe_name(self.warehouse_name)!r}"
            )
        return self


# The longest warehouse name: PostgreSQL cuts identifiers at 63 bytes, and the platform
# adds up to 13 to a table's name (raw.<name>_history, <name>_history__new while it is
# replaced). Cut, two names would be one table (a replacement would write over the table
# it replaces). The same catalog loads on DuckDB, so the rule holds there too.
MAX_WAREHOUSE_NAME = 50


def short_name(name: str) -> str:
    """``name`` cut to ``MAX_WAREHOUSE_NAME`` bytes, still safe snake_case."""
    return name.encode()[:MAX_WAREHOUSE_NAME].decode(errors="ignore").rstrip("_")


class CatalogEntries(_Strict):
    """A catalog: the tables, and the settings they share unless they set their own.
    The attributes of the raw-tables component, and the whole of a plain catalog file."""

    defaults: TableSettings = TableSettings()
    tables: list[TableEntry]

    @model_validator(mode="after")
    def _unique_warehouse_names(self):
        seen: dict[str, str] = {}
        for t in self.tables:
            name = t.warehouse_name or safe_name(t.source)
            if len(name.encode()) > MAX_WAREHOUSE_NAME:
                raise ValueError(
                    f"table {t.source!r}: warehouse name {name!r} is {len(name.encode())} bytes long; "
                    f"PostgreSQL cuts names at 63 bytes and the platform adds up to 13 to it (_history, "
                    f"__new): give the table a warehouse_name of at most {MAX_WAREHOUSE_NAME} bytes, "
                    f"for example {short_name(name)!r}"
                )
            if name in seen:
                raise ValueError(
                    f"table {t.source!r}: maps to warehouse name {name!r}, as {seen[name]!r} "
                    "does: give one of them another warehouse_name"
                )
            seen[name] = t.source
        return self

    def catalog(self, path: Path) -> Catalog:
        """The tables with their defaults applied."""
        tables = []
        for t in self.tables:
            given = t.model_dump(include=set(TableSettings.model_fields), exclude_none=True)
            settings = self.defaults.model_copy(update=given)
            tables.append(
                CatalogTable(
                    source=t.source,
                    warehouse_name=t.warehouse_name or safe_name(t.source),
                    primary_key=tuple(t.primary_key),
                    load=t.load,
                    cursor=t.cursor,
                    history=t.history,
                    columns=ColumnPolicy(tuple(t.columns.select), tuple(t.columns.exclude), tuple(t.columns.hash)),
                    description=t.description,
                    schema=t.source_schema,
                    **settings.model_dump(),
                )
            )
        return Catalog(path=path, tables=tuple(tables))


# The settings a table has unless the catalog says otherwise (one source for both shapes).
_DEFAULTS = TableSettings()


@dataclass(frozen=True)
class ColumnPolicy:
    """Which source columns land in the warehouse, and which are hashed (personal data)."""

    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()

    def loads(self, column: str) -> bool:
        """Whether a source column lands in the warehouse (a key column always does: the
        catalog refuses a policy that leaves one out)."""
        return (not self.select or column in self.select) and column not in self.exclude


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
    freshness_hours: float = _DEFAULTS.freshness_hours
    schedule: str = _DEFAULTS.schedule
    reconcile_schedule: str = _DEFAULTS.reconcile_schedule
    owner: str = _DEFAULTS.owner
    overlap_minutes: int = _DEFAULTS.overlap_minutes
    on_column_dropped: DropPolicy = _DEFAULTS.on_column_dropped
    chunk_rows: int = _DEFAULTS.chunk_rows
    # The source schema (PostgreSQL: other than the connection's search path); None: default.
    schema: str | None = None

    @property
    def cursor_column(self) -> str:
        """The cursor of an incremental table (the catalog refuses one without)."""
        if self.cursor is None:
            raise CatalogError(f"Table {self.source!r} has no cursor: only an incremental table reads by one.")
        return self.cursor


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


def load_catalog(path: Path) -> Catalog:
    """Read and validate a catalog file.

    Args:
        path: the YAML file: a raw-tables component file, or its attributes alone.

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
    if isinstance(doc, dict) and "type" in doc:
        if doc["type"] != COMPONENT_TYPE or set(doc) - {"type", "attributes"}:
            raise CatalogError(
                f"{path}: a component file of type {COMPONENT_TYPE} (with its tables under "
                f"'attributes:'), or a catalog with a 'tables' list"
            )
        doc = doc.get("attributes")
    if not isinstance(doc, dict) or not isinstance(doc.get("tables"), list):
        raise CatalogError(f"{path}: expected a mapping with a 'tables' list")
    try:
        return CatalogEntries.model_validate(doc).catalog(path)
    except ValidationError as e:
        raise CatalogError(f"{path}: {_explain(e, doc)}") from e


def _allowed(where: str, loc: list) -> str:
    model = (
        ColumnsEntry
        if loc[:1] == ["columns"]
        else TableSettings
        if where == "defaults: "
        else TableEntry
        if where
        else CatalogEntries
    )
    return ", ".join(sorted(f.alias or name for name, f in model.model_fields.items()))


def _explain(error: ValidationError, doc: dict) -> str:
    """Pydantic's errors, each naming the table (not only its index) and the fix."""
    lines = []
    errors = error.errors()
    # A column list may be one name (str | list[str]): of the two branches' errors, keep the
    # list's when the value is a list, as it names the wrong item.
    errors = [e for e in errors if not (e["loc"][-1:] == ("str",) and isinstance(e["input"], list))]
    for err in errors:
        loc, message = list(err["loc"]), err["msg"].removeprefix("Value error, ")
        where = ""
        if loc[:1] == ["tables"] and len(loc) > 1 and isinstance(loc[1], int):
            entry = doc["tables"][loc[1]]
            source = entry.get("source") if isinstance(entry, dict) else None
            where = f"table {source!r}: " if isinstance(source, str) else f"tables[{loc[1]}]: "
            loc = loc[2:]
        elif loc[:1] == ["defaults"]:
            where, loc = "defaults: ", loc[1:]
        loc = [p for p in loc if isinstance(p, int) or not p.startswith(("function-", "list[", "str"))]
        field = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}unknown key {field!r}; allowed: {_allowed(where, loc)}")
        elif err["type"] == "missing":
            lines.append(f"{where}{field} is required")
        elif field:
            lines.append(f"{where}{field} is {err['input']!r}: {message}")
        elif message.startswith("table "):
            lines.append(message)
        else:
            lines.append(f"{where}{message}")
    return "; ".join(dict.fromkeys(lines))
