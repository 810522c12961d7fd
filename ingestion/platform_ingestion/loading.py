"""Extract one source table and land it in the stage schema with its own dlt pipeline.

One pipeline per table keeps failures apart: a missing or broken table fails only its
own load. Extraction uses connectorx returning Arrow (dlt's default SQLAlchemy backend
is about 80 times slower here), pyarrow for databases connectorx does not read. dlt does
what it does well: cursors and their state, merge on the primary key, scd2 history,
schema evolution. What it lacks (audits before readers see the data, hard deletes under
a cursor) lives in ``audit.py``. Once a table is loaded, its hourly incremental runs
merge their few changed rows without a dlt pipeline: ``direct.py`` says why.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import dlt
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from dlt.common.schema.typing import TColumnSchema, TWriteDispositionConfig
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.sources.sql_database import sql_table
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from platform_shared import CatalogTable, PlatformError, Warehouse

Backend = Literal["connectorx", "pyarrow"]


class SourceTableMissing(PlatformError):
    """A catalog table is not in the source database."""


# dlt lands every table here; audit.py publishes audited copies to `raw`.
STAGE_SCHEMA = "raw_stage"
# The staged rows of an incremental table carry the generation of the run that loaded
# them: audit.py publishes only the rows newer than the last published generation.
GENERATION_COLUMN = "_platform_generation"


@dataclass(frozen=True)
class LoadRequest:
    """What one run asks of a table: a normal load, a date-range backfill or a full refresh."""

    backfill_from: date | None = None  # a datetime, or a date for a date cursor
    backfill_to: date | None = None
    full_refresh: bool = False


@dataclass
class LoadResult:
    table: str
    rows_loaded: int
    seconds: float
    backend: str  # how the rows were read, as the run's metadata says it
    cursor_value: Any = None


def choose_backend(url: str) -> Backend:
    """connectorx reads SQLite and PostgreSQL; any other database goes through pyarrow."""
    return "connectorx" if make_url(url).get_backend_name() in ("sqlite", "postgresql") else "pyarrow"


def connectorx_url(url: str) -> str:
    # connectorx wants the plain scheme (no +driver) and an absolute SQLite path.
    parsed = make_url(url)
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=False)


def pii_hasher(columns: tuple[str, ...], key: str):
    """An Arrow map that replaces personal-data columns with their keyed SHA-256."""
    keyed = hmac.new(key.encode(), digestmod=hashlib.sha256)

    def digest(value: object) -> str | None:
        if value is None:
            return None
        h = keyed.copy()
        h.update(str(value).encode())
        return h.hexdigest()

    def _map(batch: pa.Table) -> pa.Table:
        for name in columns:
            i = batch.schema.get_field_index(name)
            if i >= 0:
                column = batch.column(i)
                if pa.types.is_string(column.type) or pa.types.is_integer(column.type):
                    # Hash each distinct value once (names repeat), then spread the digests.
                    # (pyarrow.compute makes unique and index_in at import: its stubs lack them)
                    distinct = pc.unique(column)  # pyright: ignore[reportAttributeAccessIssue]
                    digests = pa.array([digest(v) for v in distinct.to_pylist()], pa.string())
                    hashed = pc.take(digests, pc.index_in(column, value_set=distinct))  # pyright: ignore[reportAttributeAccessIssue]
                else:
                    hashed = pa.array([digest(v) for v in column.to_pylist()], pa.string())
                batch = batch.set_column(i, pa.field(name, pa.string()), hashed)
        return batch

    return _map


# Arrow types read into pandas' nullable dtypes for the row hash: a plain integer column
# becomes float when a batch holds a null, and its values would then hash differently
# from one batch (or one run) to the next.
_NULLABLE = {
    getattr(pa, arrow)(): pd.api.types.pandas_dtype(nullable)
    for arrow, nullable in [
        ("int8", "Int8"),
        ("int16", "Int16"),
        ("int32", "Int32"),
        ("int64", "Int64"),
        ("uint8", "UInt8"),
        ("uint16", "UInt16"),
        ("uint32", "UInt32"),
        ("uint64", "UInt64"),
        ("float32", "Float32"),
        ("float64", "Float64"),
        ("bool_", "boolean"),
    ]
}


def row_hash(batch: pa.Table) -> pa.Table:
    """Add ``_dlt_id`` as a hash of the row's values, for scd2 tables.

    dlt's scd2 compares row hashes to find changed rows; for Arrow data it would use a
    random ``_dlt_id``, so every load would retire every row. A row hashes the same in
    any batch: nulls do not change how the other values of a column hash.
    """
    frame = batch.to_pandas(types_mapper=_NULLABLE.get)
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()  # pyright: ignore[reportAttributeAccessIssue]
    # The 16 lowercase hex digits of each hash (as f"{h:016x}"), built in one go.
    digits = binascii.hexlify(hashes.astype(">u8").tobytes())
    offsets = np.arange(0, 16 * (len(hashes) + 1), 16, dtype=np.int32)
    ids = pa.Array.from_buffers(pa.string(), len(hashes), [None, pa.py_buffer(offsets), pa.py_buffer(digits)])
    return batch.append_column("_dlt_id", ids)


def add_generation(generation: int):
    """An Arrow map that marks every extracted row with this run's publish generation."""

    def _map(batch: pa.Table) -> pa.Table:
        return batch.append_column(GENERATION_COLUMN, pa.array(np.full(batch.num_rows, generation, np.int64)))

    return _map


def _write_disposition(table: CatalogTable) -> TWriteDispositionConfig:
    if table.history == "scd2":
        # A full extract retires the rows it lacks. An incremental one holds only the
        # changed rows: the primary key as merge key limits retiring to the keys extracted
        # (rows deleted in the source are retired by audit.reconcile_deletes).
        return {"disposition": "merge", "strategy": "scd2"}  # pyright: ignore[reportReturnType]
    if table.load == "incremental":
        # One extract is one query, so no key appears twice in it: dlt's deduplication of
        # the staged rows (a window over all of them, the load's largest cost in time and
        # memory) has nothing to remove. Should the source hold a duplicate key anyway,
        # the audit fails on it instead of dlt keeping an arbitrary one of the rows.
        return {"disposition": "merge", "strategy": "delete-insert", "deduplicated": True}  # pyright: ignore[reportReturnType]
    return "replace"


def overlap(table: CatalogTable, *, dates: bool) -> timedelta:
    """The window re-read below a cursor's mark: the catalog's minutes, a whole day at
    least for a date cursor (a date has no finer step)."""
    if dates:
        return timedelta(days=max(1, -(-table.overlap_minutes // 1440)))
    return timedelta(minutes=table.overlap_minutes)


def _lag(table: CatalogTable, reflected: sa.Table | None) -> float:
    """``overlap`` in dlt's unit: days for a date cursor, seconds for any other."""
    column = reflected.c.get(table.cursor_column) if reflected is not None else None
    dates = column is not None and isinstance(column.type, sa.Date)
    window = overlap(table, dates=dates)
    return window.days if dates else window.total_seconds()


def replacing_sqlite_engine(source_url: str) -> sa.Engine:
    """A SQLite engine whose text decodes invalid UTF-8 as U+FFFD instead of failing.

    SQLite stores any bytes as TEXT; connectorx refuses a whole table over one invalid
    byte, so such a table is read again through this engine (pyarrow backend)."""
    engine = sa.create_engine(source_url)

    @event.listens_for(engine, "connect")
    def _decode(dbapi_connection, _record) -> None:
        dbapi_connection.text_factory = lambda raw: raw.decode("utf-8", "replace")

    return engine


def _declared_hint(column: sa.Column, read: sa.types.TypeEngine) -> TColumnSchema:
    if isinstance(read, sa.Text) or not isinstance(column.type, sa.Numeric):
        return {"name": column.name, "data_type": "text"}
    hint: TColumnSchema = {"name": column.name, "data_type": "decimal"}
    if precision := column.type.precision:
        hint |= {"precision": precision, "scale": column.type.scale or 0}
    return hint


def _keys(table: CatalogTable) -> dict[str, Any]:
    """sql_table's primary key (and merge key, with history) of a table, if it has one."""
    keys = list(table.primary_key)
    if not keys:
        return {}
    return {"primary_key": keys} | (
        {"merge_key": keys} if table.history == "scd2" and table.load == "incremental" else {}
    )


def _casting(source_url: str):
    """dlt's query adapter: the columns of ``read_as`` read through their cast."""

    def _adapt(query, reflected: sa.Table):
        cast = read_as(reflected, source_url)
        return query.with_only_columns(*_cast_all(query.selected_columns, cast)) if cast else query

    return _adapt


def build_resource(
    table: CatalogTable,
    *,
    source_url: str,
    request: LoadRequest,
    hash_key: str,
    generation: int | None = None,
    replace_invalid_utf8: bool = False,
    reflected: sa.Table | None = None,
):
    backend = "pyarrow" if replace_invalid_utf8 else choose_backend(source_url)
    incremental = None
    if table.load == "incremental":
        incremental = dlt.sources.incremental(
            table.cursor_column,
            # Re-read a window below the high-water mark: rows committed late, with an
            # older cursor value, are not missed. Merging on the key makes it idempotent.
            lag=_lag(table, reflected),
            initial_value=request.backfill_from,
            end_value=request.backfill_to,
        )
    credentials = (
        replacing_sqlite_engine(source_url)
        if replace_invalid_utf8
        else connectorx_url(source_url)
        if backend == "connectorx"
        else source_url
    )
    resource = sql_table(
        credentials=credentials,
        table=table.source,
        schema=table.schema,
        metadata=reflected.metadata if reflected is not None else None,
        backend=backend,
        # connectorx's "arrow" reads the whole table into memory; "arrow_stream" yields
        # batches of chunk_rows, so memory stays flat however large the table grows. The
        # pyarrow backend streams in chunk_size batches already.
        backend_kwargs=(
            {"return_type": "arrow_stream", "batch_size": table.chunk_rows} if backend == "connectorx" else {}
        ),
        chunk_size=table.chunk_rows,
        # Reflect when the run starts, never when the code location loads.
        defer_table_reflect=True,
        reflection_level="full_with_precision",
        incremental=incremental,
        query_adapter_callback=_casting(source_url) if reflected is not None else None,
        included_columns=list(table.columns.select) or None,
        excluded_columns=list(table.columns.exclude) or None,
        write_disposition=_write_disposition(table),
        **_keys(table),
    ).with_name(table.warehouse_name)
    if reflected is not None and (cast := read_as(reflected, source_url)):
        # The warehouse type of a cast column: its declared decimal (read as REAL), or text.
        resource.apply_hints(columns=[_declared_hint(reflected.c[c], t) for c, t in cast.items()])
    if reflected is not None:
        # The stage copies the source's rows, not its constraints: dlt adds a column the
        # source gained as NOT NULL (`add column channel text not null default 'web'`),
        # which fails on the rows staged before it. Every column but the key is nullable;
        # the audit checks the keys, and `raw` has no constraints.
        resource.apply_hints(
            columns=[{"name": c.name, "nullable": True} for c in reflected.columns if c.name not in table.primary_key]
        )
    if table.columns.hash:
        resource.add_map(pii_hasher(table.columns.hash, hash_key))
    if table.history == "scd2":
        resource.add_map(row_hash)
    if generation is not None:
        resource.add_map(add_generation(generation))
    return resource, backend


# DuckDB settings for every connection that loads: rows need not keep their insertion
# order (keeping it makes inserts buffer far more), and a cap on DuckDB's memory (it
# spills to disk beyond it) keeps a large table's load from taking more memory: 128 MB
# per DuckDB thread (one per core), 256 MB at least. Measured on 4 to 12 million rows,
# the process's peak then stays the same; without a cap it grows with the table.
DUCKDB_CONFIG = {
    "preserve_insertion_order": False,
    "memory_limit": f"{128 * max(2, os.cpu_count() or 1)}MB",
}


def configure_duckdb(conn) -> None:
    """Apply ``DUCKDB_CONFIG`` to a warehouse connection."""
    for name, value in DUCKDB_CONFIG.items():
        conn.execute(f"set {name} = {value!r}" if isinstance(value, str) else f"set {name} = {value}")


# dlt's scd2 merge retires changed rows with `... where _dlt_id not in (select _dlt_id from
# <staging>)`. PostgreSQL runs that as a hashed subplan only when the hash fits in work_mem
# (4 MB by default); otherwise it rescans the subquery for every row: re-ingesting 200,000
# customers (scale 100) ran for more than ten minutes. The loader's sessions get more.
POSTGRES_LOADER_WORK_MEM = "256MB"


def postgres_loader_url(url: str) -> str:
    """The warehouse URL for dlt's postgres destination, with the loader's session settings."""
    parsed = make_url(url)
    # `-cwork_mem=...`, without a space: dlt renders the URL again, writing a space as '+',
    # which libpq (ADBC's loader reads the URL with it) does not decode.
    options = f"{parsed.query.get('options', '')} -cwork_mem={POSTGRES_LOADER_WORK_MEM}".strip()
    return (
        parsed.set(drivername="postgresql")
        .update_query_dict({"options": options})
        .render_as_string(hide_password=False)
    )


def build_pipeline(table: CatalogTable, *, warehouse: Warehouse, pipelines_dir: Path) -> dlt.Pipeline:
    if warehouse.is_duckdb:
        destination = dlt.destinations.duckdb(DuckDbCredentials(warehouse.path, global_config=dict(DUCKDB_CONFIG)))
    else:
        destination = dlt.destinations.postgres(postgres_loader_url(warehouse.url))
    # dlt keeps the files of every load it completed under the pipeline folder: each run
    # of a table would add a copy of what it extracted (a full load of a large table,
    # hundreds of MB) and the folder would grow without end. Keep only their summaries.
    dlt.config["load.delete_completed_jobs"] = True
    return dlt.pipeline(
        pipeline_name=f"raw_{table.warehouse_name}",
        pipelines_dir=str(pipelines_dir),
        destination=destination,
        dataset_name=STAGE_SCHEMA,
    )


def _cursor_value(pipeline: dlt.Pipeline, table: CatalogTable) -> Any:
    for source in pipeline.state.get("sources", {}).values():
        resource = source.get("resources", {}).get(table.warehouse_name, {})
        state = resource.get("incremental", {}).get(table.cursor or "", {})
        if "last_value" in state:
            return state["last_value"]
    return None


def reflect_source(source_url: str, table: CatalogTable) -> sa.Table:
    """The source table as the database describes it now (never at import). Its MetaData
    serves dlt as a reflection cache: the run reflects each table once.

    Raises:
        SourceTableMissing: the table is not in the source database.
    """
    engine = sa.create_engine(source_url)
    try:
        # The schema on the MetaData: dlt looks the table up in it by name alone.
        return sa.Table(table.source, sa.MetaData(schema=table.schema), autoload_with=engine)
    except exc.NoSuchTableError as e:
        raise SourceTableMissing(
            f"Source table {table.source!r} (catalog entry {table.warehouse_name!r}) does not "
            f"exist in {make_url(source_url).render_as_string(hide_password=True)}: it was "
            "dropped or renamed. Fix the source, or the table's entry in the catalog."
        ) from e
    finally:
        engine.dispose()


class UnreadableValues(PlatformError):
    """A source column holds values its declared type cannot take."""


def read_as(reflected: sa.Table, source_url: str) -> dict[str, sa.types.TypeEngine]:
    """The source columns read through a cast, and the type each is read as.

    - SQLite, a column declared DECIMAL or NUMERIC: REAL. SQLite keeps each value's own
      storage class (901.00 is stored as the integer 901, 901.5 beside it as a real);
      connectorx types the column by the first value it meets and panics on the other
      (``InvalidColumnType(..., Real)``). Read as REAL, every value reads alike, and the
      warehouse casts it to the declared decimal. Text in such a column is refused first
      (``check_source_values``): a cast would make it 0.
    - PostgreSQL ``interval`` (connectorx panics: not implemented) and ``numeric``
      without a precision (connectorx fails on its scale): text, PostgreSQL's own exact
      notation (``1 day 02:03:04``, ``12345678901234567890.123456789``).
    """
    backend = make_url(source_url).get_backend_name()
    out: dict[str, sa.types.TypeEngine] = {}
    for c in reflected.columns:
        numeric = isinstance(c.type, sa.Numeric) and not isinstance(c.type, (sa.Float, sa.Integer))
        if backend == "sqlite" and numeric:
            out[c.name] = sa.Float()
        elif backend == "postgresql" and (
            isinstance(c.type, (sa.Interval, postgresql.INTERVAL))
            or numeric
            and getattr(c.type, "precision", None) is None
        ):
            out[c.name] = sa.Text()
    return out


def read_columns(reflected: sa.Table, columns, source_url: str) -> list:
    """The select list that reads ``columns`` of the source (``read_as``)."""
    return _cast_all([reflected.c[c] for c in columns], read_as(reflected, source_url))


def _cast_all(columns, cast: dict[str, sa.types.TypeEngine]) -> list:
    return [sa.cast(c, cast[c.name]).label(c.name) if c.name in cast else c for c in columns]


# The largest integer a REAL (a double) holds exactly: 2**53.
_EXACT_IN_REAL = 2**53


def check_source_values(table: CatalogTable, reflected: sa.Table, source_url: str) -> None:
    """Refuse what a SQLite DECIMAL/NUMERIC column would lose when read as REAL
    (``read_as``): text or blobs (a cast would make them 0) and integers beyond 2**53 (a
    double rounds them), naming the rows.

    Raises:
        UnreadableValues: naming the table, the column and up to five rows.
    """
    if make_url(source_url).get_backend_name() != "sqlite":
        return
    numeric = [c for c in read_as(reflected, source_url) if c in source_columns(reflected, table)]
    if not numeric:
        return
    engine = sa.create_engine(source_url)
    try:
        with engine.connect() as conn:
            for column in numeric:
                c = reflected.c[column]
                kind = sa.func.typeof(c)
                # type_coerce: SQLAlchemy's DECIMAL would parse the text it is asked to show.
                bad = conn.execute(
                    sa.select(*[reflected.c[k] for k in table.primary_key], sa.type_coerce(c, sa.String), kind)
                    .where(kind.in_(["text", "blob"]) | ((kind == "integer") & (sa.func.abs(c) > _EXACT_IN_REAL)))
                    .limit(5)
                ).all()
                if bad:
                    kinds = {r[-1] for r in bad}
                    what = [
                        *(["text that is not a number"] if kinds - {"integer"} else []),
                        *(["integers beyond 2**53 (read as REAL, they would round)"] if "integer" in kinds else []),
                    ]
                    raise UnreadableValues(
                        f"Table {table.source!r}, column {column!r} (declared {c.type}) holds {' and '.join(what)}, "
                        f"for example in the rows {[tuple(r[:-1]) for r in bad]} "
                        f"({', '.join([*table.primary_key, column])}). Nothing was loaded: fix those rows in the "
                        "source, or exclude the column in the catalog."
                    )
    finally:
        engine.dispose()


def _storage_classes(type_: sa.types.TypeEngine) -> set[str] | None:
    """The SQLite storage classes a column of this declared type is read as (``read_as``);
    None for a column without a declared type, read as whatever its values are."""
    if isinstance(type_, (sa.Boolean, sa.Integer)):
        return {"integer"}
    if isinstance(type_, sa.Float):
        return {"real"}
    if isinstance(type_, sa.Numeric):
        return {"integer", "real"}  # read as REAL
    if isinstance(type_, (sa.String, sa.DateTime, sa.Date, sa.Time)):
        return {"text"}  # SQLAlchemy keeps datetimes as text
    if isinstance(type_, sa.LargeBinary):
        return {"blob"}
    return None


# connectorx's errors on a SQLite value it cannot read as its column's type: another
# storage class than the first value's, or text that is not a date/time it parses.
_UNREADABLE = ("Invalid column type", "InvalidColumnType", "Conversion error from type", "FromSqlConversionFailure")
_DIGITS = {"Y": "[0-9][0-9][0-9][0-9]", "M": "[0-9][0-9]"}
_DAY = "{Y}-{M}-{M}".format(**_DIGITS)
_CLOCK = "{M}:{M}:{M}".format(**_DIGITS)


def unreadable_storage_class(exc: BaseException, source_url: str) -> bool:
    """Whether connectorx failed on a SQLite value it cannot read as its column's type
    (``_UNREADABLE``), possibly wrapped by dlt or the direct load."""
    if make_url(source_url).get_backend_name() != "sqlite":
        return False
    seen: BaseException | None = exc
    while seen is not None:
        if any(error in str(seen) for error in _UNREADABLE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _unparsed(c: sa.Column):
    """The text values of a date/time column that connectorx does not parse, and the form
    it reads (None for another type). It reads ``YYYY-MM-DD HH:MM:SS`` (or with a ``T``) and a fraction of
    digits, a date alone in a DATE column, ``HH:MM[:SS[.f]]`` in a TIME column: not a date
    alone in a DATETIME column, nor a time zone (``Z``, ``+02:00``), which SQLite's own
    date functions also write."""
    fraction = (
        (sa.func.substr(c, 20, 1) == ".") & (sa.func.length(c) > 20) & ~sa.func.substr(c, 21).op("GLOB")("*[^0-9]*")
    )
    if isinstance(c.type, sa.DateTime):
        ok = c.op("GLOB")(f"{_DAY}[ T]{_CLOCK}*") & ((sa.func.length(c) == 19) | fraction)
        form = "YYYY-MM-DD HH:MM:SS[.ffffff], no time zone"
    elif isinstance(c.type, sa.Date):
        ok, form = c.op("GLOB")(_DAY) & (sa.func.length(c) == 10), "YYYY-MM-DD"
    elif isinstance(c.type, sa.Time):
        ok = c.op("GLOB")("{M}:{M}*".format(**_DIGITS)) & ~sa.func.substr(c, 6).op("GLOB")("*[^0-9:.]*")
        form = "HH:MM[:SS[.ffffff]]"
    else:
        return None
    return (sa.func.typeof(c) == "text") & ~ok, form


@contextmanager
def naming_unreadable_values(table: CatalogTable, reflected: sa.Table, source_url: str):
    """Reads inside name the column and rows of a value connectorx could not read
    (``name_unreadable_values``) instead of failing with connectorx's own error."""
    try:
        yield
    except BaseException as exc:
        if unreadable_storage_class(exc, source_url):
            name_unreadable_values(table, reflected, source_url, exc)
        raise


def name_unreadable_values(table: CatalogTable, reflected: sa.Table, source_url: str, exc: BaseException) -> None:
    """After ``unreadable_storage_class``: raise UnreadableValues naming the first column
    whose values are not all of the storage classes its declared type is read as (or, for
    a column without a declared type, not all of one class), or whose text is not a
    date/time connectorx parses (``_unparsed``), and up to five of those rows. Read only
    on that failure: a scan of every column would cost every run.

    SQLite keeps each value's own storage class whatever the column's declared type (an
    INTEGER column takes 1.5 or 'abc'; a DATETIME column an integer epoch), and such a
    value would not load exactly into the declared type.
    """
    engine = sa.create_engine(source_url)
    try:
        with engine.connect() as conn:
            for column in source_columns(reflected, table):
                c = reflected.c[column]
                kind = sa.func.typeof(c)
                allowed = _storage_classes(c.type)
                if allowed is None:  # the most common class is the column's
                    counts = conn.execute(
                        sa.select(kind, sa.func.count())
                        .where(c.is_not(None))
                        .group_by(kind)
                        .order_by(sa.func.count().desc())
                    ).all()
                    allowed = {counts[0][0]} if counts else set()
                keys = [reflected.c[k] for k in table.primary_key]
                bad = conn.execute(
                    sa.select(*keys, sa.cast(c, sa.Text), kind).where(kind.not_in([*allowed, "null"])).limit(5)
                ).all()
                unparsed, form = _unparsed(c) or (None, "")
                # type_coerce: SQLAlchemy's date types would parse the text they are asked to show.
                shown = sa.type_coerce(c, sa.Text)
                text = (
                    conn.execute(sa.select(*keys, shown).where(unparsed).limit(5)).all() if unparsed is not None else []
                )
                if text:
                    raise UnreadableValues(
                        f"Table {table.source!r}, column {column!r} (declared {c.type}) holds text that the reader "
                        f"does not take as a {str(c.type).lower()} ({form}), for example in the rows "
                        f"{[tuple(r) for r in text]} "
                        f"({', '.join([*table.primary_key, column])}). Nothing was loaded: write those values in "
                        "that form in the source (SQLite: datetime(value) for a date, a minute or a UTC offset), "
                        "or exclude the column in the catalog."
                    ) from exc
                if bad:
                    declared = f"declared {c.type}" if not isinstance(c.type, sa.types.NullType) else "no declared type"
                    raise UnreadableValues(
                        f"Table {table.source!r}, column {column!r} ({declared}, read as "
                        f"{' or '.join(sorted(allowed))}) holds values of another storage class, which would not "
                        f"load exactly, for example in the rows {[tuple(r) for r in bad]} "
                        f"({', '.join([*table.primary_key, column])}, storage class). Nothing was loaded: fix those "
                        "rows in the source (each value as the column's type), or exclude the column in the catalog."
                    ) from exc
    finally:
        engine.dispose()


def source_columns(reflected: sa.Table, table: CatalogTable) -> dict[str, str]:
    """The loaded columns of the reflected source table and their SQL types."""
    return {c.name: str(c.type) for c in reflected.columns if table.columns.loads(c.name)}


def _run_options(request: LoadRequest, warehouse: Warehouse) -> dict[str, Any]:
    """pipeline.run's options: a full refresh drops the resource's state first. Arrow
    batches reach PostgreSQL as Parquet through ADBC's COPY: its default, INSERT
    statements, is many times slower, and its CSV COPY loads empty text as NULL."""
    return ({"refresh": "drop_resources"} if request.full_refresh else {}) | (
        {} if warehouse.is_duckdb else {"loader_file_format": "parquet"}
    )


def load_to_stage(
    table: CatalogTable,
    *,
    source_url: str,
    warehouse: Warehouse,
    pipelines_dir: Path,
    request: LoadRequest = LoadRequest(),
    hash_key: str = "",
    generation: int | None = None,
    reflected: sa.Table | None = None,
) -> LoadResult:
    """Extract one source table into ``raw_stage.<warehouse_name>``.

    Args:
        table: the catalog entry.
        source_url: SQLAlchemy URL of the application database (read only).
        warehouse: the warehouse (a DuckDB file or a PostgreSQL server).
        pipelines_dir: where dlt keeps this table's pipeline state (its cursor).
        request: a backfill window or a full refresh, if asked for.
        hash_key: the key of the HMAC that hashes personal-data columns.
        generation: marks the staged rows (``GENERATION_COLUMN``) of an incremental table.
        reflected: the source table from ``reflect_source``, which dlt then need not reflect.
    """
    pipeline = build_pipeline(table, warehouse=warehouse, pipelines_dir=pipelines_dir)
    started = time.perf_counter()
    for replace_invalid_utf8 in (False, True):
        resource, backend = build_resource(
            table,
            source_url=source_url,
            request=request,
            hash_key=hash_key,
            generation=generation,
            replace_invalid_utf8=replace_invalid_utf8,
            reflected=reflected,
        )
        # A load that failed half way leaves packages that dlt would load first on the next
        # run, ignoring the new extract: start every run clean.
        pipeline.abort_packages()
        try:
            info = pipeline.run(resource, **_run_options(request, warehouse))
            break
        except BaseException as exc:
            # Invalid UTF-8 in a SQLite text column: read the table again, replacing it.
            if replace_invalid_utf8 or not invalid_utf8(exc, source_url):
                raise
    if replace_invalid_utf8:
        backend = "pyarrow (invalid UTF-8 replaced by U+FFFD)"
    info.raise_on_failed_jobs()
    _drop_older_loaded_packages(pipeline, keep=info.loads_ids)
    normalize = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    rows = normalize.row_counts.get(table.warehouse_name, 0) if normalize else 0
    return LoadResult(
        table.warehouse_name,
        rows,
        time.perf_counter() - started,
        backend,
        _cursor_value(pipeline, table),
    )


def invalid_utf8(exc: BaseException, source_url: str) -> bool:
    """Whether connectorx failed on invalid UTF-8 in a SQLite text column: it panics
    (pyo3's PanicException, a BaseException, not importable)."""
    panic = isinstance(exc, Exception) or type(exc).__name__ == "PanicException"
    return panic and "Utf8Error" in str(exc) and make_url(source_url).get_backend_name() == "sqlite"


def _drop_older_loaded_packages(pipeline: dlt.Pipeline, keep: list[str]) -> None:
    """Delete the summaries dlt keeps of each earlier completed load (schema, state, some
    60 KB a table a run: an hourly schedule would pile up gigabytes). dlt has no setting
    for it; its layout is ``<pipeline folder>/load/loaded/<load id>/``. The newest load
    stays, for ``dlt pipeline ... info``."""
    loaded = Path(pipeline.working_dir) / "load" / "loaded"
    for package in loaded.iterdir() if loaded.is_dir() else ():
        if package.name not in keep:
            shutil.rmtree(package, ignore_errors=True)


def warehouse_column_names(names) -> dict[str, str]:
    """Source column name -> warehouse column name, as dlt's naming convention maps them."""
    naming = dlt.Schema("names").naming
    return {n: naming.normalize_identifier(n) for n in names}
