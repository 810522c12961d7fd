"""The column contract of the dbt models and the ML features before any run (part of
`make check`).

The lineage the assets record (``dagster/column_lineage``) exists once they have run; a
model added in a pull request, or a raw column the catalog stops loading, must fail
earlier. Here dbt compiles the project against an empty throwaway warehouse (so
``is_incremental()`` is false: the whole query), and each model's SQL is qualified, in
dependency order, against the raw tables as the catalog will load them (the source's
columns, ``columns.select``/``exclude`` applied, named as the warehouse names them) and
the output columns of the models before it. A model that reads a column none of them has
fails, named with its file and the column. The ML feature query (it reads the raw tables
only, ``raw.customers_history`` when the catalog keeps it) is qualified the same way, and
each mart column a dashboard declares (its exposure's ``config.meta.columns``) must be an
output column of that mart's compiled SQL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import NoSuchTableError

from platform_shared import HISTORY_SUFFIX, RAW_SCHEMA, CatalogTable
from platform_shared.column_lineage import Schema, Underivable, query_lineage

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "analytics_dbt"


def compiled_manifest(folder: Path) -> dict:
    """`dbt compile` of the project into ``folder``, against an empty DuckDB file there."""
    from platform_analytics.project import dbt_executable

    env = {
        **os.environ,
        "WAREHOUSE": "duckdb",
        "DBT_TARGET": "dev",
        "WAREHOUSE_PATH": str(folder / "empty.duckdb"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    # The prepared project's partial parse, as dagster-dbt seeds each run's own target.
    (folder / "target").mkdir()
    partial = PROJECT / "target" / "partial_parse.msgpack"
    if partial.exists():
        shutil.copy(partial, folder / "target" / partial.name)
    done = subprocess.run(
        [dbt_executable(), "compile", "--quiet", "--target-path", str(folder / "target"), "--log-path", str(folder)],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"dbt compile failed: {(done.stdout + done.stderr)[-2000:]}")
    return json.loads((folder / "target" / "manifest.json").read_text())


def raw_schema(tables: Iterable[CatalogTable], source_url: str) -> Schema:
    """The raw tables' columns as the catalog will load them from the source."""
    from platform_ingestion.loading import warehouse_column_names

    engine = sa.create_engine(source_url)
    try:
        inspector = sa.inspect(engine)
        schema: Schema = {RAW_SCHEMA: {}}
        for t in tables:
            try:
                names = [c["name"] for c in inspector.get_columns(t.source, schema=t.schema)]
            except NoSuchTableError:
                continue  # the load reports it; a model reading it fails below
            kept = [n for n in names if t.columns.loads(n)]
            warehouse = warehouse_column_names(kept)
            schema[RAW_SCHEMA][t.warehouse_name] = {warehouse[n]: "text" for n in kept}
            if t.history == "scd2":  # the same columns, and the validity of each version
                history = {**schema[RAW_SCHEMA][t.warehouse_name], "valid_from": "text", "valid_to": "text"}
                schema[RAW_SCHEMA][t.warehouse_name + HISTORY_SUFFIX] = history
        return schema
    finally:
        engine.dispose()


def problems(tables: Iterable[CatalogTable], source_url: str, manifest: dict | None = None) -> list[str]:
    """Each dbt model whose SQL reads a column its inputs will not have, with the reason;
    a model after one that failed is not judged again (its input is unknown).
    ``manifest``: one ``compiled_manifest`` made already."""
    schema = raw_schema(tables, source_url)
    if manifest is None:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = compiled_manifest(Path(tmp))
    found = feature_problems(tables, schema)
    models = {uid: n for uid, n in manifest["nodes"].items() if n["resource_type"] == "model"}
    failed, done = set(), set()
    while len(done) < len(models):
        ready = [
            uid
            for uid, n in sorted(models.items())
            if uid not in done and all(d not in models or d in done for d in n["depends_on"]["nodes"])
        ]
        if not ready:  # dbt refuses cycles; never loop on one
            break
        for uid in ready:
            done.add(uid)
            node = models[uid]
            if any(d in failed for d in node["depends_on"]["nodes"]):
                failed.add(uid)
                continue
            try:
                columns = query_lineage(node["compiled_code"], schema)
            except Underivable as exc:
                failed.add(uid)
                found.append(f"{node['name']} (analytics_dbt, {node['original_file_path']}): {exc}")
                continue
            schema.setdefault(node["schema"], {})[node["alias"]] = dict.fromkeys(columns, "text")
    return found + dashboard_problems(manifest, schema)


def dashboard_problems(manifest: dict, schema: Schema) -> list[str]:
    """Each mart column a dashboard declares that the mart's compiled SQL does not output
    (a mart that failed above is not judged again; the location's load names a mart the
    exposure does not depend on)."""
    from platform_analytics.assets import dashboards

    found = []
    for exposure, marts, declared in dashboards(manifest):
        for mart, columns in declared.items():
            node = marts.get(mart)
            built = schema.get(node["schema"], {}).get(node["alias"]) if node else None
            if built is None:
                continue
            for column in columns:
                if column not in built:
                    found.append(
                        f"dashboard {exposure['name']} (analytics_dbt, {exposure['original_file_path']}, "
                        f"config.meta.columns): {mart}.{column} is not a column the mart's SQL outputs "
                        f"({', '.join(built)})"
                    )
    return found


def feature_problems(tables: Iterable[CatalogTable], schema: Schema) -> list[str]:
    """The ML feature query against the raw columns the catalog will load."""
    from platform_ml.features import feature_query

    history = any(t.warehouse_name == "customers" and t.history == "scd2" for t in tables)
    try:
        query_lineage(feature_query([datetime(2000, 1, 1)], point_in_time=history), schema)
    except Underivable as exc:
        return [f"features/customer_features (ml_features, the query of ml_features/platform_ml/features.py): {exc}"]
    return []
