"""Column lineage of the dbt models, from the SQL dbt compiled in this run (component.py).

Each model's output columns are followed back to the columns of the relations it selects
from, which are assets themselves (other models, or the ``raw/`` tables for dbt sources):
chained across models, that leads from a mart column back to ``raw/<table>`` columns.
"""

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from platform_shared.column_lineage import (
    LINEAGE_GAPS,
    Schema,
    Underivable,
    lineage_metadata,
    query_reads,
    warehouse_schema,
)

from .translator import AnalyticsTranslator


class ModelLineage:
    """``dagster/column_lineage`` for the models of one dbt invocation."""

    def __init__(
        self, conn, manifest: Mapping[str, Any], target_path: Path, translator: AnalyticsTranslator, kind: str
    ):
        self._conn = conn
        self._target = Path(target_path)
        self._dialect = "duckdb" if kind == "duckdb" else "postgres"
        self._schema: Schema | None = None
        self.models, self.seconds = 0, 0.0  # followed so far, and the time it took
        relations = [n for n in manifest["nodes"].values() if n["resource_type"] in ("model", "seed", "snapshot")]
        self._keys = {
            (props["schema"], props.get("alias") or props.get("identifier") or props["name"]): translator.get_asset_key(
                props
            )
            for props in [*relations, *manifest["sources"].values()]
        }

    @property
    def schema(self) -> Schema:
        if self._schema is None:  # read once, after dbt built everything
            self._schema = warehouse_schema(self._conn)
        return self._schema

    def metadata(self, node: dict) -> dict:
        if node["resource_type"] != "model":
            return {}
        started = time.perf_counter()
        try:
            return self._metadata(node)
        finally:
            self.models += 1
            self.seconds += time.perf_counter() - started

    def _metadata(self, node: dict) -> dict:
        compiled = self._target / "compiled" / node["package_name"] / node["original_file_path"]
        try:
            if not compiled.exists():
                raise Underivable(f"dbt wrote no compiled SQL for it in this run ({compiled})")
            columns, rows = query_reads(compiled.read_text(), self.schema, self._dialect)
        except Underivable as exc:
            built = self.schema.get(node["schema"], {}).get(node["alias"], {})
            return {LINEAGE_GAPS: dg.MetadataValue.json({column: str(exc) for column in built})}
        return lineage_metadata(columns, lambda db, table: self._keys.get((db, table)), rows)
