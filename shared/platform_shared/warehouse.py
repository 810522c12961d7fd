"""The DuckDB warehouse as a Dagster resource, and the table metadata every location records."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from .errors import WarehouseError


class DuckDBWarehouse(dg.ConfigurableResource):
    """The warehouse file. Every asset that opens it must take the ``warehouse`` pool.

    Example:
        >>> wh = DuckDBWarehouse(path="/tmp/example.duckdb")
        >>> with wh.connect() as conn:
        ...     conn.execute("select 42").fetchall()
        [(42,)]
    """

    path: str

    @property
    def path_obj(self) -> Path:
        return Path(self.path)

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        path = Path(self.path)
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as e:
            raise WarehouseError(
                f"Cannot open the warehouse {path}: {e}. Check WAREHOUSE_PATH, the folder's "
                "permissions, and that no other process holds the file (assets must take the "
                "'warehouse' pool)."
            ) from e
        try:
            yield conn
        finally:
            conn.close()


def table_metadata(
    conn: duckdb.DuckDBPyConnection, schema: str, table: str, column_tags: dict | None = None
) -> dict:
    """Row count, column schema and table name of a warehouse table, as Dagster metadata.

    Args:
        column_tags: tags per column name, e.g. ``{"email": {"pii": "hashed"}}``.
    """
    columns = conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()
    (rows,) = conn.execute(f'select count(*) from "{schema}"."{table}"').fetchall()[0]
    tags = column_tags or {}
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, dtype, tags=tags.get(name)) for name, dtype in columns]
        ),
        "dagster/table_name": f"{schema}.{table}",
    }
