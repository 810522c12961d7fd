"""Extract one source table and land it in the stage schema with its own dlt pipeline.

One pipeline per table keeps failures apart: a missing or broken table fails only its
own load. Extraction uses connectorx returning Arrow (dlt's default SQLAlchemy backend
is about 80 times slower here), pyarrow for databases connectorx does not read. dlt does
what it does well: cursors and their state, merge on the primary key, scd2 history,
schema evolution. What it lacks (audits before readers see the data, hard deletes under
a cursor) lives in ``audit.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import dlt
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from dlt.sources.sql_database import sql_table
from platform_shared import CatalogTable, PlatformError
from sqlalchemy.engine import make_url

Backend = Literal["connectorx", "pyarrow"]


class SourceTableMissing(PlatformError):
    """A catalog table is not in the source database."""

# dlt lands every table here; audit.py publishes audited copies to `raw`.
STAGE_SCHEMA = "raw_stage"


@dataclass(frozen=True)
class LoadRequest:
    """What one run asks of a table: a normal load, a date-range backfill or a full refresh."""

    backfill_from: datetime | None = None
    backfill_to: datetime | None = None
    full_refresh: bool = False


@dataclass
class LoadResult:
    table: str
    rows_loaded: int
    seconds: float
    backend: Backend
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

    def digest(value: object) -> str | None:
        if value is None:
            return None
        return hmac.new(key.encode(), str(value).encode(), hashlib.sha256).hexdigest()

    def _map(batch: pa.Table) -> pa.Table:
        for name in columns:
            i = batch.schema.get_field_index(name)
            if i >= 0:
                hashed = pa.array([digest(v) for v in batch.column(i).to_pylist()], pa.string())
                batch = batch.set_column(i, pa.field(name, pa.string()), hashed)
        return batch

    return _map


def _row_hash(batch: pa.Table) -> pa.Table:
    """Add ``_dlt_id`` as a hash of the row's values, for scd2 tables.

    dlt's scd2 compares row hashes to find changed rows; for Arrow data it would use a
    random ``_dlt_id``, so every load would retire every row.
    """
    hashes = pd.util.hash_pandas_object(batch.to_pandas(), index=False).to_numpy()
    return batch.append_column("_dlt_id", pa.array([f"{h:016x}" for h in hashes], pa.string()))


def _write_disposition(table: CatalogTable):
    if table.history == "scd2":
        return {"disposition": "merge", "strategy": "scd2"}
    return "merge" if table.load == "incremental" else "replace"


def build_resource(table: CatalogTable, *, source_url: str, request: LoadRequest, hash_key: str):
    backend = choose_backend(source_url)
    incremental = None
    if table.load == "incremental":
        incremental = dlt.sources.incremental(
            table.cursor,
            # Re-read a window below the high-water mark: rows committed late, with an
            # older cursor value, are not missed. Merging on the key makes it idempotent.
            lag=table.overlap_minutes * 60,
            initial_value=request.backfill_from,
            end_value=request.backfill_to,
        )
    resource = sql_table(
        credentials=connectorx_url(source_url) if backend == "connectorx" else source_url,
        table=table.source,
        backend=backend,
        # connectorx's "arrow" reads the whole table into memory; "arrow_stream" yields
        # batches of chunk_rows, so memory stays flat however large the table grows. The
        # pyarrow backend streams in chunk_size batches already.
        backend_kwargs=(
            {"return_type": "arrow_stream", "batch_size": table.chunk_rows}
            if backend == "connectorx" else {}
        ),
        chunk_size=table.chunk_rows,
        # Reflect when the run starts, never when the code location loads.
        defer_table_reflect=True,
        reflection_level="full_with_precision",
        incremental=incremental,
        included_columns=list(table.columns.select) or None,
        excluded_columns=list(table.columns.exclude) or None,
        primary_key=list(table.primary_key) or None,
        write_disposition=_write_disposition(table),
    ).with_name(table.warehouse_name)
    if table.columns.hash:
        resource.add_map(pii_hasher(table.columns.hash, hash_key))
    if table.history == "scd2":
        resource.add_map(_row_hash)
    return resource, backend


def build_pipeline(table: CatalogTable, *, warehouse_path: Path, pipelines_dir: Path) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=f"raw_{table.warehouse_name}",
        pipelines_dir=str(pipelines_dir),
        destination=dlt.destinations.duckdb(str(warehouse_path)),
        dataset_name=STAGE_SCHEMA,
    )


def _cursor_value(pipeline: dlt.Pipeline, table: CatalogTable) -> Any:
    for source in pipeline.state.get("sources", {}).values():
        resource = source.get("resources", {}).get(table.warehouse_name, {})
        state = resource.get("incremental", {}).get(table.cursor or "", {})
        if "last_value" in state:
            return state["last_value"]
    return None


def source_columns(source_url: str, table: CatalogTable) -> dict[str, str]:
    """The loaded columns of the source table and their SQL types, read now (not at import).

    Raises:
        SourceTableMissing: the table is not in the source database.
    """
    engine = sa.create_engine(source_url)
    try:
        columns = sa.inspect(engine).get_columns(table.source)
    except sa.exc.NoSuchTableError as e:
        raise SourceTableMissing(
            f"Source table {table.source!r} (catalog entry {table.warehouse_name!r}) does not "
            f"exist in {make_url(source_url).render_as_string(hide_password=True)}: it was "
            "dropped or renamed. Fix the source, or the table's entry in the catalog."
        ) from e
    finally:
        engine.dispose()
    policy = table.columns
    return {
        c["name"]: str(c["type"]) for c in columns
        if (not policy.select or c["name"] in policy.select) and c["name"] not in policy.exclude
    }


def source_keys(source_url: str, table: CatalogTable, names: list[str]) -> pa.Table:
    """The primary keys of every source row now, one narrow column per key part,
    renamed to their warehouse names (for hard-delete reconciliation)."""
    query = sa.select(*[sa.column(c) for c in table.primary_key]).select_from(sa.table(table.source))
    if choose_backend(source_url) == "connectorx":
        import connectorx as cx

        dialect = sa.create_engine(source_url).dialect
        sql = str(query.compile(dialect=dialect))
        keys = cx.read_sql(connectorx_url(source_url), sql, return_type="arrow")
    else:
        engine = sa.create_engine(source_url)
        with engine.connect() as conn:
            rows = conn.execute(query).fetchall()
        engine.dispose()
        keys = pa.table({c: [r[i] for r in rows] for i, c in enumerate(table.primary_key)})
    return keys.rename_columns(names)


def source_row_count(source_url: str, table: CatalogTable) -> int:
    engine = sa.create_engine(source_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(sa.table(table.source))).scalar_one()
    finally:
        engine.dispose()


def load_to_stage(
    table: CatalogTable,
    *,
    source_url: str,
    warehouse_path: Path,
    pipelines_dir: Path,
    request: LoadRequest = LoadRequest(),
    hash_key: str = "",
) -> LoadResult:
    """Extract one source table into ``raw_stage.<warehouse_name>``.

    Args:
        table: the catalog entry.
        source_url: SQLAlchemy URL of the application database (read only).
        warehouse_path: the DuckDB file.
        pipelines_dir: where dlt keeps this table's pipeline state (its cursor).
        request: a backfill window or a full refresh, if asked for.
        hash_key: the key of the HMAC that hashes personal-data columns.
    """
    resource, backend = build_resource(table, source_url=source_url, request=request, hash_key=hash_key)
    pipeline = build_pipeline(table, warehouse_path=warehouse_path, pipelines_dir=pipelines_dir)
    # A load that failed half way leaves packages that dlt would load first on the next
    # run, ignoring the new extract: start every run clean.
    pipeline.abort_packages()
    started = time.perf_counter()
    info = pipeline.run(resource, refresh="drop_resources" if request.full_refresh else None)
    info.raise_on_failed_jobs()
    normalize = pipeline.last_trace.last_normalize_info
    rows = normalize.row_counts.get(table.warehouse_name, 0) if normalize else 0
    return LoadResult(
        table.warehouse_name, rows, time.perf_counter() - started, backend,
        _cursor_value(pipeline, table),
    )


def warehouse_column_names(names) -> dict[str, str]:
    """Source column name -> warehouse column name, as dlt's naming convention maps them."""
    naming = dlt.Schema("names").naming
    return {n: naming.normalize_identifier(n) for n in names}
