"""Load one source table into the warehouse's ``raw`` schema with its own dlt pipeline.

One pipeline per table keeps failures apart: a missing or broken table fails only
its own load. Extraction uses connectorx returning Arrow (dlt's default SQLAlchemy
backend is about 80 times slower here), pyarrow as the fallback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dlt
from dlt.sources.sql_database import sql_table
from platform_shared import RAW_SCHEMA, CatalogTable
from sqlalchemy.engine import make_url

Backend = Literal["connectorx", "pyarrow"]


@dataclass(frozen=True)
class LoadResult:
    table: str
    rows_loaded: int
    seconds: float
    backend: Backend


def choose_backend(url: str) -> Backend:
    """connectorx reads SQLite and PostgreSQL; any other database goes through pyarrow."""
    return "connectorx" if make_url(url).get_backend_name() in ("sqlite", "postgresql") else "pyarrow"


def _connectorx_url(url: str) -> str:
    # connectorx wants the plain scheme (no +driver) and an absolute SQLite path.
    parsed = make_url(url)
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=False)


def load_table(
    table: CatalogTable,
    *,
    source_url: str,
    warehouse_path: Path,
    pipelines_dir: Path,
) -> LoadResult:
    """Copy one source table into ``raw.<warehouse_name>``, replacing the previous copy.

    Args:
        table: the catalog entry.
        source_url: SQLAlchemy URL of the application database.
        warehouse_path: the DuckDB file.
        pipelines_dir: where dlt keeps this table's pipeline state.
    """
    backend = choose_backend(source_url)
    kwargs = {"return_type": "arrow"} if backend == "connectorx" else {}
    resource = sql_table(
        credentials=_connectorx_url(source_url) if backend == "connectorx" else source_url,
        table=table.source,
        backend=backend,
        backend_kwargs=kwargs,
        # Reflect when the run starts, never when the code location loads.
        defer_table_reflect=True,
        reflection_level="full_with_precision",
        primary_key=list(table.primary_key) or None,
        write_disposition="replace",
    ).with_name(table.warehouse_name)
    pipeline = dlt.pipeline(
        pipeline_name=f"raw_{table.warehouse_name}",
        pipelines_dir=str(pipelines_dir),
        # insert-from-staging loads into a staging dataset and swaps in one transaction,
        # so readers never see a half-loaded table (the default truncates first).
        destination=dlt.destinations.duckdb(str(warehouse_path), replace_strategy="insert-from-staging"),
        dataset_name=RAW_SCHEMA,
    )
    started = time.perf_counter()
    info = pipeline.run(resource)
    info.raise_on_failed_jobs()
    rows = pipeline.last_trace.last_normalize_info.row_counts.get(table.warehouse_name, 0)
    return LoadResult(table.warehouse_name, rows, time.perf_counter() - started, backend)
