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
- ``daily_from``: the selected models as daily partitions from that day (one run for any
  range of days: DuckDB has one writer; automation keeps the last days current). The days
  reach dbt as ``--vars`` (``macros/daily_partition.sql``): dagster-dbt's component
  resolves ``{{ partition_range_start }}`` in ``cli_args`` through a context its own build
  sets, which this one does not use.
- ``dashboards``: whether this instance adds the dashboards (the project's exposures):
  the project is two instances here (daily models and the rest), the dashboards one set.
- ``execute``: row counts, columns and column lineage of each built table, read after dbt
  exits (DuckDB lets no other process read the file while dbt writes it). dagster-dbt's
  own column lineage needs dbt's adapter in this process, which the location never loads:
  ``column_lineage.py`` follows the SQL dbt compiled for this run instead. Then the
  oldest invocations' target folders go (``kept_invocations``, ``prune_invocations``).
  Each dbt command starts from the parse state its step's last command left
  (``invocation_folder``, ``keep_parse_state``), not only from the prepared one.
"""

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import dagster as dg
import dagster_dbt
from dagster.components import DefsStateConfig
from dagster_dbt.asset_utils import build_dbt_specs
from dagster_dbt.dagster_dbt_translator import validate_translator
from dagster_dbt.dbt_manifest import validate_manifest

from platform_shared import load_settings, table_metadata, warehouse_pool
from platform_shared.automation import on_upstream_update

from .assets import dashboard_specs
from .column_lineage import ModelLineage
from .project import prepare_if_changed
from .translator import AnalyticsTranslator

# Rows of past days still change (a session updated after midnight, a late refund): a
# daily model's automation rebuilds this many newest partitions, today's included.
AUTOMATED_DAYS = 3
# dagster-dbt's folder of one invocation under target/: <op name>-<run id>-<random>, 7 hex each.
INVOCATION_FOLDER = re.compile(r".+-[0-9a-f]{7}-[0-9a-f]{7}")
# An invocation still running keeps its folder: only folders untouched this long may go.
INVOCATION_MAX_SECONDS = 3600


def prune_invocations(target: Path, keep: int) -> list[Path]:
    """Delete the oldest invocation folders under ``target`` beyond the newest ``keep``
    (and untouched for ``INVOCATION_MAX_SECONDS``); returns those deleted.

    Written by hand: dagster-dbt gives every dbt command a target folder of its own (its
    artifacts, about 2.3 MB for this project) and never deletes one, so a deployment whose
    automation runs dbt every few minutes fills its disk; neither dbt's `clean` nor
    dagster-dbt knows these folders. "Touched" is the newest change of the folder or of
    what it holds (dbt appends to its dbt.log while it runs); a folder another step
    deletes meanwhile is skipped."""

    def touched(folder: Path) -> float | None:
        try:
            return max([folder.stat().st_mtime, *(f.stat().st_mtime for f in folder.iterdir())])
        except OSError:  # deleted meanwhile
            return None

    folders = [(t, f) for f in target.iterdir() if INVOCATION_FOLDER.fullmatch(f.name) and (t := touched(f))]
    folders.sort(reverse=True)
    old = [f for t, f in folders[keep:] if time.time() - t > INVOCATION_MAX_SECONDS]
    for folder in old:
        shutil.rmtree(folder, ignore_errors=True)
    return old


PARSE_STATE = "partial_parse.msgpack"


def invocation_folder(project_dir: Path, step: str, run_id: str) -> Path:
    """A new target folder for one dbt command of ``step``, named as dagster-dbt names its
    own, holding the parse state the step's last command left, if any.

    Written by hand: dagster-dbt copies only the prepared ``target/partial_parse.msgpack``
    into each new folder, and dbt re-parses the whole project when that state's profile
    or ``--vars`` differ from the command's (dbt logs "Unable to do partial parsing"):
    a deployment whose WAREHOUSE_PATH is not the one the image was prepared with, and
    every daily run (its days are ``--vars``), paid a full parse each time. dbt checks the
    state it is given (files, profile, vars, its own version) and parses again what
    changed, so a state kept from an earlier command is never trusted blindly."""
    target = project_dir / os.environ.get("DBT_TARGET_PATH", "target")  # dbt's own variable
    folder = target / f"{step}-{run_id[:7]}-{uuid.uuid4().hex[:7]}"
    kept = target / f"{step}.{PARSE_STATE}"
    if kept.exists():  # else dagster-dbt copies the prepared state
        folder.mkdir(parents=True)
        shutil.copyfile(kept, folder / PARSE_STATE)
    return folder


def keep_parse_state(folder: Path, step: str, since_ns: int) -> bool:
    """Keep the parse state dbt wrote in ``folder`` after ``since_ns`` (the command's start)
    for the step's next command. A state dbt did not write (it stopped before parsing, or
    found nothing changed) is the one the command started from, which a concurrent command
    may have replaced with a newer one meanwhile: it is left as it is. Replaced whole: a
    concurrent command reads the old state or this one, never a torn file."""
    written = folder / PARSE_STATE
    if not written.exists() or written.stat().st_mtime_ns < since_ns:
        return False
    kept = folder.parent / f"{step}.{PARSE_STATE}"
    partial = kept.with_name(f"{kept.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(written, partial)
        os.replace(partial, kept)
    finally:
        partial.unlink(missing_ok=True)
    return True


# dagster_dbt.X, not an import of X: `dg list components` lists what this module names.
@dataclass
class AnalyticsDbtProject(dagster_dbt.DbtProjectComponent):
    """The dbt project's models, seeds and tests as assets and checks, its exposures as
    dashboards; dbt runs from the engine's environment. Attributes as
    ``dagster_dbt.DbtProjectComponent``'s (``cli_args`` are plain strings here), and:"""

    daily_from: Annotated[
        str | None,
        dg.Resolver.default(
            description="The first day (YYYY-MM-DD) of daily partitions of the selected models; "
            "none: unpartitioned. Each run passes its days to dbt as --vars min_date, max_date."
        ),
    ] = None
    dashboards: Annotated[bool, dg.Resolver.default(description="Add the project's exposures as dashboard assets.")] = (
        True
    )
    kept_invocations: Annotated[
        int,
        dg.Resolver.default(
            description="How many of dagster-dbt's per-invocation target folders (dbt's artifacts of one "
            "step) to keep; older ones are deleted after each step."
        ),
    ] = 20

    @property
    def defs_state_config(self) -> DefsStateConfig:
        """dagster-dbt's, keyed by the selection too: two instances share one project."""
        own = super().defs_state_config
        return DefsStateConfig(
            key=f"{own.key}[{self.select} -{self.exclude}]",
            management_type=own.management_type,
            refresh_if_dev=own.refresh_if_dev,
        )

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
        # Every node, then this instance's selection (``_selected``): dagster-dbt evaluates
        # any other selection with dbt-core, which this location's environment lacks.
        specs, checks = build_dbt_specs(
            translator=validate_translator(self.translator),
            manifest=manifest,
            select="fqn:*",
            exclude="",
            selector="",
            project=project,
            io_manager_key=None,
        )
        selected = self._selected(manifest, context.path / "defs.yaml")
        specs = [s for s in specs if s.key in selected]
        checks = [c for c in checks if c.asset_key in selected]
        op = self._get_op_spec(project)
        partitions, backfill = None, op.backfill_policy
        if self.daily_from:
            partitions = dg.DailyPartitionsDefinition(start_date=self.daily_from, end_offset=1)  # today's too
            backfill = dg.BackfillPolicy.single_run()  # DuckDB has one writer: a range is one dbt run
            automation = on_upstream_update(days=AUTOMATED_DAYS)
            specs = [s.replace_attributes(automation_condition=automation) for s in specs]

        @dg.multi_asset(
            specs=specs,
            check_specs=checks,
            can_subset=True,
            name=op.name,
            op_tags=op.tags,
            pool=op.pool,
            partitions_def=partitions,
            backfill_policy=backfill,
            allow_arbitrary_check_specs=self.translator.settings.enable_source_tests_as_checks,
            required_resource_keys={"dbt", "warehouse"},
        )
        def _models(context: dg.AssetExecutionContext):
            yield from self.execute(context=context, dbt=context.resources.dbt)

        dashboards = dashboard_specs(dict(manifest), self._analytics) if self.dashboards else []
        return dg.Definitions(assets=[_models, *dashboards])

    def _selected(self, manifest: Mapping, source: Path) -> set[dg.AssetKey]:
        """The keys of the models this instance selects. dbt itself runs the selection
        (``select``, ``exclude`` reach it as written); the location only needs to know which
        assets are whose, without dbt-core (2 s more to load): tags are all it reads."""

        def tag(expression: str) -> str | None:
            if expression in ("", "fqn:*"):
                return None
            if not expression.startswith("tag:") or any(c in expression for c in " ,+@*"):
                raise dg.DagsterInvalidDefinitionError(
                    f"{source}: selection {expression!r}: this location reads `tag:<name>` or the default "
                    "only (it loads without dbt-core); tag the models instead."
                )
            return expression.removeprefix("tag:")

        if self.selector:
            raise dg.DagsterInvalidDefinitionError(f"{source}: selector {self.selector!r}: select by tag: instead.")
        want, drop = tag(self.select), tag(self.exclude)
        return {
            self._analytics.get_asset_key(node)
            for node in manifest["nodes"].values()
            if node["resource_type"] in ("model", "seed", "snapshot")
            and (want is None or want in node.get("tags", []))
            and (drop is None or drop not in node.get("tags", []))
        }

    def execute(self, context: dg.AssetExecutionContext, dbt: dagster_dbt.DbtCliResource) -> Iterator:
        args = [str(a) for a in self.cli_args]
        if self.daily_from:
            window = context.partition_time_window  # a partition, or a backfill's range
            days: dict = {"min_date": window.start.date().isoformat(), "max_date": window.end.date().isoformat()}
            # A window that reaches the newest partition keeps the models current: it also
            # applies what changed upstream on other days since the last build (a session
            # updated a week later, a deleted order). Without it, automation and `make run`
            # (which run the newest days) would leave older days behind for ever. A window
            # in the past (a backfill) rebuilds exactly its days.
            # The newest partition when the run was created (today's: end_offset=1), not
            # when it runs: a run of today's partition that starts after midnight still
            # catches up.
            partitions = context.assets_def.partitions_def
            assert isinstance(partitions, dg.TimeWindowPartitionsDefinition)
            record = context.instance.get_run_record_by_id(context.run.run_id)
            created = record.create_timestamp if record else datetime.now(UTC)
            created = created if created.tzinfo else created.replace(tzinfo=UTC)
            newest = partitions.time_window_for_partition_key(
                created.astimezone(ZoneInfo(partitions.timezone)).strftime(partitions.fmt)
            )
            days["catch_up"] = window.end >= newest.end
            args += ["--vars", json.dumps(days)]
            context.log.info(
                f"Daily models rebuild the days from {days['min_date']} to before {days['max_date']}"
                + (", and apply upstream changes and deletes of every other day" if days["catch_up"] else "")
            )
        step = context.op_execution_context.op.name
        folder = invocation_folder(Path(dbt.project_dir), step, context.run.run_id)
        invocation = dbt.cli(args, context=context, raise_on_error=False, target_path=folder)
        # dbt has started (its state, if any, is in the folder) and parses a second or more later.
        started_ns = time.time_ns()
        # Held back until dbt exits: DuckDB lets no other process read the file while dbt
        # writes it. (dagster-dbt's fetch_row_counts reopens the profile's database, which
        # is the attached alias here, not a file it can open.)
        events = list(invocation.stream())
        warehouse = context.resources.warehouse
        with warehouse.connect(read_only=True) as conn:
            lineage = ModelLineage(conn, invocation.manifest, invocation.target_path, self._analytics, warehouse.kind)
            yield from (_with_table_metadata(conn, e, invocation.manifest, lineage) for e in events)
        context.log.info(f"Column lineage of {lineage.models} models in {lineage.seconds:.2f} s")
        try:  # neither keeping the parse state nor tidying may fail a step whose dbt ran
            keep_parse_state(Path(invocation.target_path), step, started_ns)
            pruned = prune_invocations(Path(invocation.target_path).parent, self.kept_invocations)
            if pruned:
                context.log.info(f"Deleted {len(pruned)} old dbt target folders (keeps {self.kept_invocations})")
        except OSError as exc:
            context.log.warning(f"dbt's parse state was not kept or old target folders were not deleted: {exc}")
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
