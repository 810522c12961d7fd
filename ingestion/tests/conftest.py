"""An ingestion location over a small SQLite source in a temporary folder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from platform_ingestion.loading import pii_hasher
from platform_shared import Warehouse, load_catalog
from platform_shared import settings as s
from platform_shared.automation import plain_run_job
from platform_shared.demo_data import generate


@dataclass
class Ingestion:
    root: Path
    source_url: str
    warehouse: Path
    catalog_path: Path
    warehouse_url: str | None = None  # set: the warehouse is this PostgreSQL database

    def run(self, *tables: str, config: dict | None = None) -> dg.ExecuteInProcessResult:
        """Materialize the given raw tables (all when none) in one in-process run."""
        from platform_ingestion.definitions import defs

        keys = [dg.AssetKey(["raw", t]) for t in tables] or None
        run_config = {"ops": {f"raw__{t}": {"config": config} for t in tables}} if config else None
        return plain_run_job(defs(), keys).execute_in_process(
            raise_on_error=False,
            run_config=run_config,
        )

    failure_message = staticmethod(lambda result: _failure_message(result))
    failed_steps = staticmethod(lambda result: _failed_steps(result))

    def runs_during_writes(self, writer, runs: int) -> list[bool]:
        """Run every table ``runs`` times while ``writer`` (a started live writer) commits,
        each run succeeding; then kill the writer (mid-write, maybe) and run once quiet.
        Returns each materialization's ``keys_compared``, during the writes."""
        compared = []
        for attempt in range(runs):
            result = self.run()
            assert result.success, f"run {attempt}: {self.failure_message(result)}"
            compared += [
                e.materialization.metadata["keys_compared"].value for e in result.get_asset_materialization_events()
            ]
        assert writer.poll() is None, "the writer stopped before the runs ended: they proved nothing"
        writer.kill()
        writer.wait()
        assert self.run().success
        return compared

    def reconciles_during_writes(self, writer, tables: list[str]) -> None:
        """Reconcile every table twice while ``writer`` (a started live writer) commits,
        each passing its audit; kill the writer, then one more makes raw equal to the
        source, and the next finds nothing to repair. PII_HASH_KEY must be test-only-key."""
        from platform_ingestion.reconcile import reconcile_table

        catalog = load_catalog(self.catalog_path)
        warehouse = Warehouse(path=str(self.warehouse))

        def reconcile_all() -> dict[str, tuple]:
            found = {}
            for table in tables:
                differences, _ = reconcile_table(
                    catalog.table(table), warehouse=warehouse, source_url=self.source_url, hash_key="test-only-key"
                )
                found[table] = (differences.missing, differences.extra, differences.different)
            return found

        during = [reconcile_all() for _ in range(2)]
        assert writer.poll() is None, "the writer stopped before the reconciliations ended: they proved nothing"
        writer.kill()
        writer.wait()
        # The writer's commits reached the comparisons (rows it inserted, updated or deleted).
        assert any(any(counts) for found in during for counts in found.values())
        reconcile_all()
        for table in tables:
            self.assert_raw_equals_source(table)
        assert reconcile_all() == dict.fromkeys(tables, (0, 0, 0))

    def sql(self, statement: str) -> None:
        with sqlite3.connect(self.root / "app.db") as conn:
            conn.executescript(statement)

    def raw_types(self, table: str) -> dict[str, str]:
        sql = (
            "select column_name, data_type from information_schema.columns where table_schema = 'raw' "
            f"and table_name = '{table}' order by ordinal_position"
        )
        if self.warehouse_url:
            engine = sa.create_engine(self.warehouse_url)
            with engine.connect() as conn:
                found = conn.execute(sa.text(sql)).all()
            engine.dispose()
            return dict(found)
        return dict(self.query(sql))

    def source_email(self, customer_id: int) -> str:
        with sqlite3.connect(self.root / "app.db") as conn:
            return conn.execute("select email from customers where customer_id = ?", [customer_id]).fetchall()[0][0]

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.warehouse), read_only=True) as conn:
            return conn.execute(sql).fetchall()

    def assert_raw_equals_source(self, table: str) -> None:
        entry = load_catalog(self.catalog_path).table(table)
        engine = sa.create_engine(self.source_url)
        with engine.connect() as conn:
            source = pd.read_sql_table(entry.source, conn)
        declared = {c.name: c.type for c in sa.Table(entry.source, sa.MetaData(), autoload_with=engine).columns}
        engine.dispose()
        key = (
            os.getenv(s.PII_HASH_KEY) or (self.warehouse.parent / "pii_hash.key").read_text().strip()
            if entry.columns.hash
            else ""
        )
        source = pii_hasher(entry.columns.hash, key)(pa.Table.from_pandas(source, preserve_index=False)).to_pandas()
        if self.warehouse_url:  # a PostgreSQL warehouse
            engine = sa.create_engine(self.warehouse_url)
            with engine.connect() as conn:
                raw = pd.read_sql(sa.text(f'select * from raw."{table}"'), conn)
            engine.dispose()
        else:
            with duckdb.connect(str(self.warehouse), read_only=True) as conn:
                raw = conn.execute(f'select * from raw."{table}"').df()
        assert len(raw) == len(source), table
        # The declared types too: frames compared with check_dtype=False would take an
        # integer loaded as text, or a timestamp as a string, for the source's.
        for column, warehouse_type in self.raw_types(table).items():
            source_type = "text" if column in entry.columns.hash else _kind(declared[column])
            assert warehouse_type.lower().startswith(WAREHOUSE_TYPES[source_type]), (table, column, warehouse_type)
        pd.testing.assert_frame_equal(
            _frame(raw, entry.primary_key), _frame(source, entry.primary_key), check_dtype=False
        )


# The warehouse type (its start, lower case, DuckDB's or PostgreSQL's) of each kind of
# source column the demo and the tests declare.
WAREHOUSE_TYPES = {
    "integer": ("bigint", "integer"),
    "text": ("varchar", "character varying", "text"),
    "timestamp": ("timestamp",),
    "date": ("date",),
    "boolean": ("boolean",),
    "real": ("double",),
}


def _kind(declared) -> str:
    if isinstance(declared, sa.Boolean):
        return "boolean"
    if isinstance(declared, sa.DateTime):
        return "timestamp"
    if isinstance(declared, sa.Date):
        return "date"
    if isinstance(declared, sa.Integer):
        return "integer"
    if isinstance(declared, sa.Float):
        return "real"
    return "text"


def _frame(df: pd.DataFrame, pk) -> pd.DataFrame:
    df = df[sorted(df.columns)].copy()
    for column in df.columns:
        if column.endswith("_at"):
            df[column] = pd.to_datetime(df[column])
    return df.sort_values(list(pk)).reset_index(drop=True)


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            messages.append(error.message + (error.cause.message if error.cause else ""))
    return "\n".join(messages)


def _failed_steps(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.is_step_failure}


def committed_catalog() -> str:
    """The committed raw-tables component's attributes, as a plain catalog file (the same
    text, unindented, for the tests that edit it)."""
    text = (Path(__file__).parents[1] / "platform_ingestion" / "defs" / "raw_tables" / "defs.yaml").read_text()
    return textwrap.dedent(text.split("\nattributes:\n", 1)[1])


@pytest.fixture
def ingestion(tmp_path, monkeypatch) -> Ingestion:
    source_url = f"sqlite:///{tmp_path}/app.db"
    generate(source_url, scale=0.05)
    catalog = tmp_path / "catalog.yml"
    catalog.write_text(committed_catalog())
    monkeypatch.setenv(s.SOURCE_DATABASE_URL, source_url)
    monkeypatch.setenv(s.WAREHOUSE_PATH, str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv(s.INGESTION_CATALOG, str(catalog))
    return Ingestion(tmp_path, source_url, tmp_path / "warehouse.duckdb", catalog)


@pytest.fixture
def writer(ingestion):
    """Start the demo's live writer on the source (or ``url``); killed, mid-write, at the end."""
    started = []

    def start(seconds: float = 120, url: str | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "platform_shared.demo_data",
                "--url",
                url or ingestion.source_url,
                "--live",
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started.append(proc)
        time.sleep(1.0)  # its first commits (and the switch to WAL) land before the load reads
        assert proc.poll() is None, proc.stderr.read().decode()
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()
