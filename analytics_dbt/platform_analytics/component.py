"""The analytics location's dbt component: dagster-dbt's ``DbtProjectComponent``,
configured in ``defs/dbt/defs.yaml``, for a dbt that runs from its own environment.

What the subclass changes, and why (dagster-dbt 0.29.27, pinned):

- ``get_asset_spec`` and ``get_asset_check_spec``: the project's translator
  (``translator.AnalyticsTranslator``: sources keyed by the shared ``raw/`` scheme,
  groups, owners, automation, freshness, blocking tests).
- ``build_defs_from_state``: the component's own builds its op with a ``DbtCliResource``
  that finds ``dbt`` on PATH, which this location's environment lacks (dbt-core lives in
  ``analytics_dbt/engine/.venv``; the location loads without importing it). This one
  builds the same specs (dagster-dbt's ``build_dbt_specs``) for an op that takes the
  location's ``dbt`` resource (the engine's dbt, ``resources.py``) and re-parses
  the manifest under ``dagster dev`` only when its inputs changed (``prepare_if_changed``,
  instead of the component's parse on every load), and adds the dashboards (dbt exposures,
  for which dagster-dbt makes no assets).
- ``execute``: row counts, columns and column lineage of each built table, read after dbt
  exits (DuckDB lets no other process read the file while dbt writes it). dagster-dbt's
  own column lineage needs dbt's adapter in this process, which the location never loads:
  ``column_lineage.py`` follows the SQL dbt compiled for this run instead.
"""

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import dagster as dg
import dagster_dbt
from dagster_dbt.asset_utils import build_dbt_specs
from dagster_dbt.dagster_dbt_translator import validate_translator
from dagster_dbt.dbt_manifest import validate_manifest

from platform_shared import load_settings, table_metadata, warehouse_pool

from .assets import dashboard_specs
from .column_lineage import ModelLineage
from .project import prepare_if_changed
from .translator import AnalyticsTranslator


# dagster_dbt.X, not an import of X: `dg list components` lists what this module names.
class AnalyticsDbtProject(dagster_dbt.DbtProjectComponent):
    """The dbt project's models, seeds and tests as assets and checks, its exposures as
    dashboards; dbt runs from the engine's environment. Attributes as
    ``dagster_dbt.DbtProjectComponent``'s; ``cli_args`` are plain strings here."""

    @staticmethod
    @dg.template_var
    def warehouse_pool() -> str:
        """The pool of every warehouse writer (``op: pool:`` in defs.yaml)."""
        return warehouse_pool(load_settings())

    @cached_property
    def _analytics(self) -> AnalyticsTranslator:
        return AnalyticsTranslator()

    def get_asset_spec(self, manifest, unique_id, project) -> dg.AssetSpec:
        return self._analytics.get_asset_spec(manifest, unique_id, project)

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project) -> dg.AssetCheckSpec | None:
        return self._analytics.get_asset_check_spec(asset_spec, manifest, unique_id, project)

    def build_defs_from_state(self, context: dg.ComponentLoadContext, state_path: Path | None) -> dg.Definitions:
        if not all(isinstance(a, str) for a in self.cli_args):
            raise dg.DagsterInvalidDefinitionError(
                f"{context.path / 'defs.yaml'}: cli_args {self.cli_args!r} must be plain strings here "
                "(platform_analytics.component runs them as written)."
            )
        prepare_if_changed()
        project = self.dbt_project
        manifest = validate_manifest(project.manifest_path)
        specs, checks = build_dbt_specs(
            translator=validate_translator(self.translator),
            manifest=manifest,
            select=self.select,
            exclude=self.exclude,
            selector=self.selector,
            project=project,
            io_manager_key=None,
        )
        op = self._get_op_spec(project)

        @dg.multi_asset(
            specs=specs,
            check_specs=checks,
            can_subset=True,
            name=op.name,
            op_tags=op.tags,
            pool=op.pool,
            allow_arbitrary_check_specs=self.translator.settings.enable_source_tests_as_checks,
            required_resource_keys={"dbt", "warehouse"},
        )
        def _models(context: dg.AssetExecutionContext):
            yield from self.execute(context=context, dbt=context.resources.dbt)

        return dg.Definitions(assets=[_models, *dashboard_specs(dict(manifest), self._analytics)])

    def execute(self, context: dg.AssetExecutionContext, dbt: dagster_dbt.DbtCliResource) -> Iterator:
        invocation = dbt.cli([str(a) for a in self.cli_args], context=context, raise_on_error=False)
        # Held back until dbt exits: DuckDB lets no other process read the file while dbt
        # writes it. (dagster-dbt's fetch_row_counts reopens the profile's database, which
        # is the attached alias here, not a file it can open.)
        events = list(invocation.stream())
        warehouse = context.resources.warehouse
        with warehouse.connect(read_only=True) as conn:
            lineage = ModelLineage(conn, invocation.manifest, invocation.target_path, self._analytics, warehouse.kind)
            yield from (_with_table_metadata(conn, e, invocation.manifest, lineage) for e in events)
        context.log.info(f"Column lineage of {lineage.models} models in {lineage.seconds:.2f} s")
        if not invocation.is_successful():
            raise dg.Failure(f"dbt build failed: {invocation.get_error()}")


def _with_table_metadata(conn, event, manifest, lineage: ModelLineage):
    """Add row count, column schema and column lineage of the built relation to a model's Output."""
    if not isinstance(event, dg.Output):
        return event
    unique_id = event.metadata["unique_id"].value if "unique_id" in event.metadata else ""
    node = manifest["nodes"].get(unique_id)
    if not node or node["resource_type"] not in ("model", "seed", "snapshot"):
        return event
    table = table_metadata(conn, node["schema"], node["alias"])
    return event.with_metadata({**event.metadata, **table, **lineage.metadata(node)})
