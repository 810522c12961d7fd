"""The warehouse as a Dagster resource (a DuckDB file, or a PostgreSQL server), and the
table metadata every location records."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from .errors import WarehouseError
from .settings import WAREHOUSE_URL, Settings

if TYPE_CHECKING:
    import duckdb

# The executor of every location's runs. With DuckDB every asset takes the one
# `warehouse` pool, so the steps of a run never run in parallel anyway, and a subprocess
# per step (Dagster's default) costs about 6 s on these machines: steps run in the run's
# own process.
RUN_EXECUTOR = dg.in_process_executor

# The pool of every asset that reads or writes the warehouse, in every location. DuckDB:
# one process at a time (limit 1, `default_limit` in dagster.yaml): it allows one writer,
# and readers in other processes fail meanwhile. A server warehouse takes as many steps
# at once as WAREHOUSE_CONCURRENCY (`make dev` and `make deploy-check` set its limit).
DUCKDB_POOL = "warehouse"
SERVER_POOL = "warehouse_server"


def warehouse_pool(settings: Settings) -> str:
    return SERVER_POOL if settings.warehouse == "postgres" else DUCKDB_POOL


class PostgresConnection:
    """A PostgreSQL connection with the part of DuckDB's Python API the platform uses.

    Written by hand because the SQL of ingestion's write-audit-publish and of the ML
    features runs on either warehouse: ``execute(sql, params)`` with ``?`` placeholders
    returns something to ``fetchall()``; a statement without result rows (insert,
    delete) fetches ``[(rows affected,)]``, as in DuckDB. Autocommit, as DuckDB: a
    transaction is an explicit ``begin`` ... ``commit``."""

    def __init__(self, url: str):
        import psycopg2
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        try:
            self._conn = psycopg2.connect(
                host=parsed.host,
                port=parsed.port or 5432,
                user=parsed.username,
                password=parsed.password,
                dbname=parsed.database,
                options="-c timezone=UTC",
                connect_timeout=30,
            )
        except psycopg2.Error as e:
            raise WarehouseError(
                f"Cannot connect to the warehouse {parsed.render_as_string(hide_password=True)}: "
                f"{str(e).strip()}. Check {WAREHOUSE_URL}."
            ) from e
        self._conn.autocommit = True
        self.url = parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)

    def execute(self, sql: str, params=None) -> _Result:
        cursor = self._conn.cursor()
        cursor.execute(_pg_params(sql) if params is not None else sql, params)
        return _Result(cursor)

    def executemany(self, sql: str, rows) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_pg_params(sql), list(rows))

    def copy_arrow(self, relation: str, batches) -> int:
        """Append a stream of Arrow batches to ``relation`` with COPY, by column name;
        returns the rows. Every value is quoted and a null is not: empty text stays empty
        text, a null stays NULL."""
        import pyarrow.csv as pa_csv

        quote = lambda n: '"' + n.replace('"', '""') + '"'  # noqa: E731
        options = pa_csv.WriteOptions(include_header=False, quoting_style="all_valid")
        rows = 0
        with self._conn.cursor() as cursor:
            for batch in batches:
                buffer = io.BytesIO()
                pa_csv.write_csv(batch, buffer, options)
                buffer.seek(0)
                cursor.copy_expert(
                    f"copy {relation} ({', '.join(map(quote, batch.schema.names))}) from stdin "
                    "with (format csv, encoding 'utf8')",
                    buffer,
                )
                rows += batch.num_rows
        return rows

    def write_dataframe(self, schema: str, table: str, frame) -> None:
        """Replace ``schema.table`` with a pandas DataFrame (pandas' own ``to_sql``)."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.url)
        try:
            frame.to_sql(table, engine, schema=schema, if_exists="replace", index=False, chunksize=10_000)
        finally:
            engine.dispose()

    def close(self) -> None:
        self._conn.close()


class _Result:
    def __init__(self, cursor):
        self._cursor = cursor

    def fetchall(self) -> list[tuple]:
        try:
            if self._cursor.description is None:
                return [(self._cursor.rowcount,)]
            return self._cursor.fetchall()
        finally:
            self._cursor.close()

    def df(self):
        """The rows as a pandas DataFrame; numeric columns as floats, as DuckDB gives them."""
        import pandas as pd

        columns = [c.name for c in self._cursor.description]
        frame = pd.DataFrame(self.fetchall(), columns=columns)
        for name in columns:
            if frame[name].dtype == object and any(type(v).__name__ == "Decimal" for v in frame[name]):
                frame[name] = frame[name].astype(float)
        return frame


def _pg_params(sql: str) -> str:
    # psycopg2 takes %s placeholders; our SQL has no '?' or '%' inside its literals.
    return sql.replace("%", "%%").replace("?", "%s")


class Warehouse(dg.ConfigurableResource):
    """The warehouse: the DuckDB file at ``path`` (``kind="duckdb"``), or the PostgreSQL
    database at ``url`` (``kind="postgres"``). Every asset that opens it takes the pool
    of ``warehouse_pool``.

    Example:
        >>> wh = Warehouse(path="/tmp/example.duckdb")
        >>> with wh.connect() as conn:
        ...     conn.execute("select 42").fetchall()
        [(42,)]
    """

    kind: str = "duckdb"
    path: str = ""
    url: str = ""

    @property
    def path_obj(self) -> Path:
        return Path(self.path)

    @property
    def is_duckdb(self) -> bool:
        return self.kind == "duckdb"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every step that uses the warehouse writes it: fail before any work, naming the file.
        if self.is_duckdb:
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
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection | PostgresConnection]:
        if not self.is_duckdb:
            conn = PostgresConnection(self.url)
            try:
                yield conn
            finally:
                conn.close()
            return
        import duckdb  # on first use: the ML and analytics locations load without it

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


def build_warehouse(settings: Settings) -> Warehouse:
    """The warehouse resource of the settings; a server URL reaches Dagster as an EnvVar,
    so the UI shows the variable's name, never the password."""
    if settings.warehouse == "postgres":
        return Warehouse(kind="postgres", url=dg.EnvVar(WAREHOUSE_URL))
    return Warehouse(path=str(settings.warehouse_path))


# The SQL of ingestion's write-audit-publish is written once, for both warehouses; these
# are the few places where DuckDB and PostgreSQL differ. A connection is either a DuckDB
# connection or a PostgresConnection (which answers DuckDB's calls).


def quote(name: str) -> str:
    """A quoted identifier, on either warehouse."""
    return '"' + name.replace('"', '""') + '"'


def relation(schema: str, table: str) -> str:
    """``"schema"."table"``, quoted."""
    return f"{quote(schema)}.{quote(table)}"


def temp_relation(conn, name: str) -> str:
    """The qualified name of the temporary table ``name`` (``create temp table name``):
    a drop by this name never reaches a real table of that name in the default schema."""
    schema = "pg_temp" if isinstance(conn, PostgresConnection) else "temp.main"
    return f"{schema}.{quote(name)}"


_ARROW = "_platform_arrow"


def empty_temp_table(conn, name: str, select: str, source: str) -> str:
    """(Re)create the temporary table ``name`` empty, with the columns and types of
    ``select <select> from <source>``; returns its qualified name (``temp_relation``)."""
    qualified = temp_relation(conn, name)
    conn.execute(f"drop table if exists {qualified}").fetchall()
    conn.execute(f"create temp table {quote(name)} as select {select} from {source} limit 0").fetchall()
    return qualified


def append_arrow(conn, relation: str, data, *, select: str | None = None, like: str | None = None) -> int:
    """Append Arrow data (a table, a record batch reader or batches) to ``relation`` by
    column name, cast to the relation's column types; returns the rows appended.
    PostgreSQL: ``COPY`` from Python (see ``copy_arrow``); DuckDB scans the Arrow data.

    Args:
        select: instead of the data, append this select list over its columns, in the
            relation's column order (say, a key and a hash of the values: the rows never
            land). DuckDB evaluates it on the Arrow data as it scans it, so it casts each
            column it reads (``column_types``). PostgreSQL cannot: it evaluates it on the
            data copied first into a temporary table with the column types of ``like``
            (a table holding every column of the data).
    """
    if isinstance(conn, PostgresConnection):
        batches = data.to_batches() if hasattr(data, "to_batches") else data
        if select is None:
            return conn.copy_arrow(relation, batches)
        if like is None:
            raise ValueError(f"appending a select to {relation} on PostgreSQL needs the table the data is like")
        arrow = empty_temp_table(conn, _ARROW, ", ".join(quote(n) for n in data.schema.names), like)
        try:
            conn.copy_arrow(arrow, batches)
            (rows,) = conn.execute(f"insert into {relation} select {select} from {arrow}").fetchall()[0]
        finally:
            conn.execute(f"drop table if exists {arrow}").fetchall()
        return rows
    conn.register(_ARROW, data)
    try:
        sql = (
            f"insert into {relation} by name select * from {_ARROW}"
            if select is None
            else (f"insert into {relation} select {select} from {_ARROW}")
        )
        (rows,) = conn.execute(sql).fetchall()[0]
    finally:
        conn.unregister(_ARROW)
    return rows


def column_types(conn, schema: str, table: str) -> dict[str, str]:
    """Each column of ``schema.table`` and its exact type, as a cast names it
    (``DECIMAL(12,2)``, ``numeric(12,2)``: PostgreSQL's information_schema leaves the
    precision out)."""
    if isinstance(conn, PostgresConnection):
        sql = (
            "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a join pg_class c "
            "on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace where n.nspname = ? "
            "and c.relname = ? and a.attnum > 0 and not a.attisdropped order by a.attnum"
        )
    else:
        sql = (
            "select column_name, data_type from information_schema.columns where table_schema = ? "
            "and table_name = ? order by ordinal_position"
        )
    return dict(conn.execute(sql, [schema, table]).fetchall())


def hash_values(conn, expressions: list[str]) -> str:
    """An SQL expression hashing the values of ``expressions`` together: equal values of
    equal types hash alike on either side of a comparison (a float's -0 and 0 too), a NULL
    differs from every value (an empty text included), and the order counts. 64 bits on
    either warehouse: DuckDB's ``hash`` of the values; PostgreSQL's
    ``hash_record_extended`` of the row, each value hashed by its type's own hash function
    (PostgreSQL 14 or later). The MD5 of the row's text that it replaced spent most of a
    reconciliation on the server converting every value to text (docs/performance.md,
    "Reconciling on PostgreSQL"), and told a -0 from a 0 that compare equal."""
    listed = ", ".join(expressions)
    if isinstance(conn, PostgresConnection):
        return f"hash_record_extended(row({listed}), 0)"
    return f"hash({listed})"


def analyze(conn, relation: str) -> None:
    """Give PostgreSQL's planner the row count of a table just filled (a temporary table
    has no statistics until analysed, and a join on it may pick a nested loop). DuckDB
    keeps its statistics as it writes."""
    if isinstance(conn, PostgresConnection):
        conn.execute(f"analyze {relation}").fetchall()


def index(conn, schema: str, table: str, column: str) -> None:
    """An index on ``column`` of a table, unless there is one: on PostgreSQL, where the
    rows of a few values (a load's generation) are otherwise found by reading the whole
    table. Nothing on DuckDB: its zone maps skip the row groups that cannot match, and
    an index there slows every write."""
    if isinstance(conn, PostgresConnection):
        name = quote(f"{table}__{column}"[:63])
        conn.execute(f"create index if not exists {name} on {relation(schema, table)} ({quote(column)})").fetchall()


@contextmanager
def exclusive(conn, lock: int) -> Iterator[None]:
    """Hold the lock ``lock`` while the block runs; a second holder waits.

    PostgreSQL: a session advisory lock, released by a killed run's closed connection.
    DuckDB: nothing to take, since the file has one writer process, and every writer takes
    the one-slot ``warehouse`` pool."""
    if not isinstance(conn, PostgresConnection):
        yield
        return
    conn.execute("select pg_advisory_lock(?)", [lock]).fetchall()
    try:
        yield
    finally:
        try:
            conn.execute("select pg_advisory_unlock(?)", [lock]).fetchall()
        except Exception:  # noqa: S110 (a lost connection released the lock, and must not hide why it was lost)
            pass


def rollback(conn) -> None:
    """Roll back the open transaction; a failed rollback (the connection is gone, and its
    transaction with it) never hides the error that called for it."""
    try:
        conn.execute("rollback").fetchall()
    except Exception:  # noqa: S110
        pass


def write_dataframe(conn, schema: str, table: str, frame) -> None:
    """Replace ``schema.table`` with a pandas DataFrame, on either warehouse."""
    conn.execute(f"create schema if not exists {schema}").fetchall()
    if isinstance(conn, PostgresConnection):
        conn.write_dataframe(schema, table, frame)
        return
    conn.register("_frame", frame)
    try:
        conn.execute(f"create or replace table {schema}.{table} as select * from _frame").fetchall()
    finally:
        conn.unregister("_frame")


def replace_table(conn, schema: str, table: str, select: str) -> None:
    """``create or replace table schema.table as <select>`` on either warehouse.

    PostgreSQL has no ``create or replace table``, and a table that dbt's views read
    cannot be dropped without dropping them. So its rows are replaced (truncate and
    insert: atomic inside a transaction); columns the new rows add are added first. Only
    when a column changes type or goes is the table replaced: the views that read it
    (and views on those) are created again from their definitions, in the same
    transaction; one that no longer fits the table raises, naming it, and nothing changes."""
    relation = f'"{schema}"."{table}"'
    if not isinstance(conn, PostgresConnection):
        conn.execute(f"create or replace table {relation} as {select}").fetchall()
        return
    new = f'"{schema}"."{table}__new"'
    conn.execute(f"drop table if exists {new}").fetchall()
    conn.execute(f"create table {new} as {select}").fetchall()
    # format_type: the exact type to add a column with (numeric(12,2), arrays, domains).
    columns = (
        "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a join pg_class c "
        "on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace where n.nspname = ? "
        "and c.relname = ? and a.attnum > 0 and not a.attisdropped order by a.attnum"
    )
    before = [tuple(r) for r in conn.execute(columns, [schema, table]).fetchall()]
    after = [tuple(r) for r in conn.execute(columns, [schema, f"{table}__new"]).fetchall()]
    if not before:
        conn.execute(f'alter table {new} rename to "{table}"').fetchall()
        return
    if set(before) <= set(after):
        for name, data_type in after:
            if (name, data_type) not in before:
                conn.execute(f'alter table {relation} add column "{name}" {data_type}').fetchall()
        names = ", ".join(f'"{n}"' for n, _ in after)
        conn.execute(f"truncate {relation}").fetchall()
        conn.execute(f"insert into {relation} ({names}) select {names} from {new}").fetchall()
        conn.execute(f"drop table {new}").fetchall()
        return
    views = _dependent_views(conn, schema, table)
    conn.execute(f"drop table if exists {relation} cascade").fetchall()
    conn.execute(f'alter table {new} rename to "{table}"').fetchall()
    for view_schema, view, definition in views:
        try:
            conn.execute(f'create view "{view_schema}"."{view}" as {definition}').fetchall()
        except Exception as e:
            raise WarehouseError(
                f"Replacing {schema}.{table} (a column changed type or was dropped) would drop the view "
                f"{view_schema}.{view}, which no longer fits it: {str(e).strip()}. Update the model, or drop the "
                "view, and run again."
            ) from e


def _dependent_views(conn, schema: str, table: str) -> list[tuple[str, str, str]]:
    """The views that read ``schema.table``, directly or through other views, as (schema,
    name, definition), each after the views it reads."""
    rows = conn.execute(
        """with recursive deps(oid, depth) as (
            select distinct r.ev_class, 1 from pg_depend d join pg_rewrite r on r.oid = d.objid
            where d.refobjid = (quote_ident(?) || '.' || quote_ident(?))::regclass and r.ev_class <> d.refobjid
            union
            select distinct r.ev_class, deps.depth + 1 from deps join pg_depend d on d.refobjid = deps.oid
            join pg_rewrite r on r.oid = d.objid where r.ev_class <> deps.oid and deps.depth < 50
        )
        select n.nspname, c.relname, pg_get_viewdef(c.oid), max(deps.depth) from deps
        join pg_class c on c.oid = deps.oid join pg_namespace n on n.oid = c.relnamespace
        where c.relkind = 'v' group by n.nspname, c.relname, c.oid order by max(deps.depth)""",
        [schema, table],
    ).fetchall()
    return [(s, v, d) for s, v, d, _ in rows]


def table_metadata(conn, schema: str, table: str, column_tags: dict | None = None, rows: int | None = None) -> dict:
    """Row count, column schema and table name of a warehouse table, as Dagster metadata.

    Args:
        column_tags: tags per column name, e.g. ``{"email": {"pii": "hashed"}}``.
        rows: the row count when the caller knows it (counting is a scan of the table on
            PostgreSQL).
    """
    columns = conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()
    if rows is None:
        (rows,) = conn.execute(f'select count(*) from "{schema}"."{table}"').fetchall()[0]
    tags = column_tags or {}
    return {
        "dagster/row_count": dg.MetadataValue.int(int(rows or 0)),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, dtype, tags=tags.get(name)) for name, dtype in columns]
        ),
        "dagster/table_name": f"{schema}.{table}",
    }
