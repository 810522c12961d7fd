"""Write a catalog (a raw-tables component file) from a live database: ``make discover``
(any schema, SQLite or PostgreSQL).

Every table gets its primary key as the database declares it, a safe warehouse name
where its own name is not one (the mapping is written in the catalog), and incremental
loading where an ``updated_at``-like column exists. A table without a primary key is
loaded in full, with a warning written beside it. A cursor column without an index gets a
warning too (the table stays incremental, but each load would scan it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import sqlalchemy as sa
import yaml

from platform_shared import load_settings, safe_name
from platform_shared.catalog import COMPONENT_TYPE, MAX_WAREHOUSE_NAME, short_name

# Column names that look like a row's last-modified time, best first.
CURSOR_NAMES = (
    "updated_at",
    "modified_at",
    "last_modified",
    "last_modified_at",
    "updated_on",
    "modified_on",
    "updated",
    "modified",
    "last_update",
)


def _cursor(columns: Sequence[Mapping]) -> str | None:
    by_name = {safe_name(c["name"]): c["name"] for c in columns}
    return next((by_name[n] for n in CURSOR_NAMES if n in by_name), None)


def discover(url: str, *, schema: str | None = None) -> dict:
    """Describe every table of the database at ``url`` as a catalog document.

    Example:
        >>> doc = discover("sqlite:////tmp/app.db")  # doctest: +SKIP
        >>> doc["tables"][0]["source"]  # doctest: +SKIP
        'customers'
    """
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        tables, taken = [], set()
        # Tables whose names are already safe keep them; the others get what is left.
        names = sorted(inspector.get_table_names(schema=schema), key=lambda n: (safe_name(n) != n, n))
        for name in names:
            columns = inspector.get_columns(name, schema=schema)
            pk = inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or []
            entry: dict = {"source": name, **({"schema": schema} if schema else {})}
            warehouse = base = short_name(safe_name(name))
            n = 2
            while warehouse in taken:  # a name taken, or two names cut alike
                warehouse = f"{base[: MAX_WAREHOUSE_NAME - 1 - len(str(n))]}_{n}"
                n += 1
            taken.add(warehouse)
            if warehouse != name:
                entry["warehouse_name"] = warehouse
            cursor = _cursor(columns)
            if pk:
                entry["primary_key"] = pk[0] if len(pk) == 1 else pk
            else:
                entry["comment"] = (
                    "WARNING: no primary key in the source: loaded in full, "
                    "without key audits. Add primary_key if one exists."
                )
            if pk and cursor:
                entry["load"] = "incremental"
                entry["cursor"] = cursor
                leading = {
                    i["column_names"][0] for i in inspector.get_indexes(name, schema=schema) if i["column_names"]
                }
                if cursor not in leading:
                    entry["comment"] = (
                        f"WARNING: no index on {cursor} in the source: every incremental "
                        "load scans the whole table. Index it in the application database."
                    )
            tables.append(entry)
    finally:
        engine.dispose()
    return {"tables": sorted(tables, key=lambda t: t["source"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", help="SQLAlchemy URL (default: SOURCE_DATABASE_URL)")
    parser.add_argument("--schema", help="database schema (default: the default one)")
    parser.add_argument("--out", help="catalog file to write (default: print)")
    args = parser.parse_args(argv)
    doc = discover(args.url or load_settings().source_database_url, schema=args.schema)
    # A raw-tables component file: it replaces defs/raw_tables/defs.yaml, or INGESTION_CATALOG points at it.
    text = "# Written by `make discover`: review before use.\n" + yaml.safe_dump(
        {"type": COMPONENT_TYPE, "attributes": doc}, sort_keys=False, allow_unicode=True
    )
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {len(doc['tables'])} tables to {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
