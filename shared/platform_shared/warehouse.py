"""The DuckDB warehouse as a Dagster resource, and the table metadata every location records."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
import tempfile
from pathlib import Path

import dagster as dg
import duckdb

from .errors import WarehouseError


# The executor of every location's runs. Every asset takes the one `warehouse` pool, so the
# steps of a run never run in parallel anyway, and a subprocess per step (Dagster's default)
# costs about 6 s on these machines: steps run in the run's own process.
RUN_EXECUTOR = dg.in_process_executor


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

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every step that uses the warehouse writes it: fail before any work, naming the file.
        self.check_writable()

    def check_writable(self) -> None:
        """Raise WarehouseError unless the file (or, when it does not exist yet, its folder,
        created if missing) can be written. Nothing is written."""
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                open(path, "r+b").close()
            else:
                tempfile.TemporaryFile(dir=path.parent).close()
        except OSError as e:
            raise WarehouseError(
                f"The warehouse {path} cannot be written ({e.strerror or e}): check WAREHOUSE_PATH "
                f"and the permissions of {path.parent}. Nothing was loaded."
            ) from e

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        path = Path(self.path)
        if not read_only:
            self.check_writable()
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
