"""Column lineage from SQL: for each output column of a query, the table columns it reads.

Computed where the SQL runs (the dbt step, once dbt has built its models; the ML feature
step), from the SQL as it ran and the warehouse's own column list, never when a location
loads. sqlglot parses and qualifies the query (``select *`` expanded from the warehouse's
columns) and follows each output column through CTEs, subqueries, unions and windows.

What counts as "reads": the columns in the expression that computes the output column
(``count(*)`` reads no column). Filters, join conditions and group keys choose the rows
instead: they are listed apart, for the whole table (``query_reads``), since a change to
one changes which rows every column holds, and dropping one breaks the query. Except
behind a left join to a side with one row per join key at most, and in a subquery of a
select list: there they choose the values read from that side (``attached`` and
``sides`` in ``query_reads``). A query that cannot be
followed (a table the warehouse does not have, SQL the parser cannot read) raises
``Underivable`` with the parser's reason.

Emitted as Dagster's ``dagster/column_lineage`` metadata (``TableColumnLineage``), and the
row columns as ``column_lineage_rows`` (Dagster's lineage has no place for them), which
any tool reading the instance (``make impact``) follows across code locations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import dagster as dg

from .lineage import ROW_COLUMNS
from .warehouse import PostgresConnection

# schema -> table -> column -> type, as the warehouse's information_schema lists them
Schema = dict[str, dict[str, dict[str, str]]]
# (schema, table, column) of the warehouse
ColumnRef = tuple[str, str, str]

COLUMN_LINEAGE = "dagster/column_lineage"
# Columns without lineage, each with the reason (Dagster's lineage entry has no place for it).
LINEAGE_GAPS = "column_lineage_gaps"


def sql_dialect(conn) -> str:
    """sqlglot's dialect for a warehouse connection."""
    return "postgres" if isinstance(conn, PostgresConnection) else "duckdb"


class Underivable(ValueError):
    """The query's column lineage cannot be followed; the message says why."""


def warehouse_schema(conn) -> Schema:
    """Every table and view of the warehouse with its columns (DuckDB or PostgreSQL)."""
    rows = conn.execute(
        "select table_schema, table_name, column_name, data_type from information_schema.columns "
        "where table_schema not in ('information_schema', 'pg_catalog') "
        "order by table_schema, table_name, ordinal_position"
    ).fetchall()
    schema: Schema = {}
    for db, table, column, type_ in rows:
        schema.setdefault(db, {}).setdefault(table, {})[column] = type_
    return schema


def query_lineage(sql: str, schema: Schema, dialect: str = "duckdb") -> dict[str, list[ColumnRef]]:
    """Each output column of ``sql`` (in order) with the warehouse columns it reads, sorted."""
    return query_reads(sql, schema, dialect)[0]


def _inline_named_windows(tree) -> None:
    """``sum(x) over w ... window w as (partition by ...)`` becomes ``sum(x) over
    (partition by ...)``, and ``over (w order by d)`` takes w's partition and its own
    order: sqlglot's lineage follows a window written inline only. Each select's names
    apply to its own windows (a subquery's are its own)."""
    from sqlglot import exp

    for select in list(tree.find_all(exp.Select)):
        named = {w.name: w for w in select.args.get("windows") or []}
        if not named:
            continue
        for window in list(select.find_all(exp.Window)):
            alias = window.args.get("alias")
            spec = named.get(alias.name) if isinstance(alias, exp.Identifier) else None
            if spec is None or window.find_ancestor(exp.Select) is not select:
                continue
            for arg in ("partition_by", "order", "spec"):
                if spec.args.get(arg) and not window.args.get(arg):
                    value = spec.args[arg]
                    window.set(arg, [e.copy() for e in value] if isinstance(value, list) else value.copy())
            window.set("alias", None)
        select.set("windows", None)


def query_reads(
    sql: str, schema: Schema, dialect: str = "duckdb"
) -> tuple[dict[str, list[ColumnRef]], list[ColumnRef]]:
    """``query_lineage``, and the warehouse columns that choose the query's rows: those in
    a filter, a join condition, a group key, a ``having``/``qualify``, ``distinct on`` or an
    ``order by`` cut by a ``limit``, and every column of a subquery in a filter, at any
    depth (followed through CTEs and subqueries to the tables), sorted. Not followed: the
    recursive step of a recursive CTE."""
    # Imported here: a step that follows SQL pays for sqlglot, a location that loads does not.
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError
    from sqlglot.lineage import lineage, to_node
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.scope import Scope, build_scope
    from sqlglot.schema import MappingSchema

    def tables(node) -> set[ColumnRef]:
        return {
            (n.source.db, n.source.name, n.name.rsplit(".", 1)[-1].strip('"'))
            for n in node.walk()
            if isinstance(n.source, exp.Table)
        }

    try:
        tree = sqlglot.parse_one(sql, dialect=dialect)
        ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            # dbt names the database by its attached alias, which differs per process.
            table.set("catalog", None)
            if table.name and table.name not in ctes and table.name not in schema.get(table.db, {}):
                # (qualify would leave a `select *` from it unexpanded, and no error)
                raise Underivable(f"reads {table.db}.{table.name}, which the warehouse does not have")
        _inline_named_windows(tree)
        known = MappingSchema(dict[str, object](schema), dialect=dialect)
        tree = qualify(tree, schema=known, dialect=dialect)
        if not isinstance(tree, exp.Query):
            raise Underivable(f"not a query: {type(tree).__name__}")
        scope = build_scope(tree)
        if scope is None:
            raise Underivable("sqlglot found no scope in the query")
        nodes = {
            column: lineage(column, tree, schema=known, dialect=dialect, scope=scope, trim_selects=False)
            for column in tree.named_selects
        }
        out = {column: tables(node) for column, node in nodes.items()}
        scopes = list(scope.traverse())  # every scope of the query, inner ones first
        clauses = (exp.Where, exp.Join, exp.Group, exp.Having, exp.Qualify)  # where a column chooses rows

        def in_clause(node, root) -> bool:  # under a row clause of the scope whose root is ``root``
            while (node := node.parent) is not None and node is not root:
                # (an aggregate's own `filter (where ...)` computes its value: not rows)
                if isinstance(node, clauses) and not isinstance(node.parent, exp.Filter):
                    return True
                # `distinct on (...)`; an `order by` that a `limit` or `offset` cuts (not a window's)
                if isinstance(node, exp.Distinct) or (
                    isinstance(node, exp.Order)
                    and not isinstance(node.parent, exp.Window)
                    and (root.args.get("limit") or root.args.get("offset"))
                ):
                    return True
            return False

        chosen: dict[int, bool] = {}

        def chooses(inner) -> bool:
            """Every column of the scope chooses rows: a subquery in a filter (`where id in
            (select ...)`), or any scope inside one (a union's branches, a nested subquery)."""
            if id(inner) not in chosen:
                parent = inner.parent
                chosen[id(inner)] = bool(
                    parent
                    and (
                        (inner.is_subquery and in_clause(inner.expression, parent.expression))
                        or (not inner.is_cte and chooses(parent))
                    )
                )
            return chosen[id(inner)]

        def row_projections(inner) -> list:
            """The projections of a scope whose values choose its rows: every one under a
            plain `distinct`, in a branch of a `union` (not `all`), `intersect` or `except`,
            or of a union cut by a `limit`; `group by all`'s keys (the projections that
            aggregate nothing of their own); those that an `order by` cut by a `limit`, or
            `distinct on`, names by alias or position (qualify leaves those unresolved)."""
            select, parent = inner.expression, inner.expression.parent
            if not isinstance(select, exp.Select):
                return []
            distinct = select.args.get("distinct")
            if (
                (distinct and not distinct.args.get("on"))
                or isinstance(parent, (exp.Intersect, exp.Except))
                or (isinstance(parent, exp.Union) and (parent.args.get("distinct") or parent.args.get("limit")))
            ):
                return list(select.selects)
            picked = []
            group = select.args.get("group")
            if group and group.args.get("all"):
                picked += [
                    p
                    for p in select.selects
                    if not any(a.find_ancestor(exp.Select) is select for a in p.find_all(exp.AggFunc))
                ]
            refs = list(distinct.args["on"].expressions) if distinct else []  # (`distinct on`: plain returned)
            order = select.args.get("order")
            if order is not None and (select.args.get("limit") or select.args.get("offset")):
                refs += [o.this if isinstance(o, exp.Ordered) else o for o in order.expressions]
            named = {p.alias_or_name: p for p in select.selects}
            for ref in refs:
                if isinstance(ref, exp.Column) and not ref.table and ref.name in named:
                    picked.append(named[ref.name])
                elif isinstance(ref, exp.Literal) and ref.is_int and 0 < int(ref.name) <= len(select.selects):
                    picked.append(select.selects[int(ref.name) - 1])
            return picked

        def in_select_list(inner) -> bool:  # a subquery among its parent's projections
            node, root = inner.expression, inner.parent.expression
            while node.parent is not None and node.parent is not root:
                node = node.parent
            return isinstance(root, exp.Select) and node.parent is root and node.arg_key == "expressions"

        def attached() -> dict[int, int]:
            """The left joins that keep every row of their left side and add at most one
            row to each (each join's id, with its right side's): the right side a CTE (read
            once) or a subquery that groups by columns it returns, each of them equal to a
            left-side value in the join's condition. Their conditions and the right side's
            own row clauses then choose no row of the query, only the values of the columns
            read from that side."""
            found: dict[int, int] = {}
            for outer in scopes:
                for join in outer.expression.args.get("joins") or []:
                    right = join.this
                    source = outer.sources.get(right.alias_or_name)
                    left = join.side == "LEFT" and join.kind in ("", "OUTER")  # not a semi or anti join
                    if not left or not isinstance(source, Scope) or not join.args.get("on"):
                        continue
                    if isinstance(right, exp.Table) and sum(t.name == right.name for t in tree.find_all(exp.Table)) > 1:
                        continue  # a CTE read elsewhere too
                    select = source.expression
                    if not isinstance(select, exp.Select):
                        continue
                    group = select.args.get("group")
                    if not group or group.args.get("all") or not group.expressions:
                        continue
                    if any(
                        p.find(exp.Unnest, exp.Explode, exp.UDTF, exp.GenerateSeries, exp.Anonymous)
                        for p in select.selects
                    ):
                        continue  # a function that may return several rows (a function sqlglot does not know, too)
                    returned = {p.unalias().sql(): p.alias_or_name for p in select.selects}
                    keys = {returned.get(g.sql()) for g in group.expressions}
                    on = join.args["on"]
                    equal = {
                        side.name
                        for eq in (on.flatten() if isinstance(on, exp.And) else [on])
                        if isinstance(eq, exp.EQ)
                        for side, other in ((eq.left, eq.right), (eq.right, eq.left))
                        if isinstance(side, exp.Column)
                        and side.table == right.alias_or_name
                        and not any(c.table == right.alias_or_name for c in other.find_all(exp.Column))
                    }
                    if None not in keys and keys <= equal:
                        found[id(join)] = id(select)
            return found

        attaching = attached()
        # The sides whose row clauses choose values, not rows: those left-joined sides, and
        # each subquery of a select list (a scalar: its filter chooses what its value reads).
        sides = set(attaching.values()) | {
            id(inner.expression)
            for inner in scopes
            if inner.is_subquery and inner.parent and not chooses(inner) and in_select_list(inner)
        }

        def contained_by(column) -> int | None:
            """The side whose values ``column`` chooses, if it chooses no row: the nearest
            side around it (its row clauses, or those of a scope inside it, or an outer
            column that a scalar subquery's filter correlates with), or the join that
            attaches one."""
            node = column
            while (node := node.parent) is not None:
                if id(node) in sides:
                    return id(node)
                if id(node) in attaching:
                    return attaching[id(node)]
            return None

        rows: set[ColumnRef] = set()
        values: dict[int, set[ColumnRef]] = {side: set() for side in sides}
        leaked: set[int] = set()

        def choose(side: int | None, reads: set[ColumnRef], node=None) -> None:
            """``reads`` choose the rows of ``side`` (of the query, if None); so do the
            choices of every other side that ``node`` (their lineage) reads through."""
            (rows if side is None else values[side]).update(reads)
            if node is not None:
                leaked.update((sides & {id(n.source) for n in node.walk()}) - {side})

        for inner in scopes:
            for column in inner.columns:
                if not (chooses(inner) or in_clause(column, inner.expression)):
                    continue
                side = None if chooses(inner) else contained_by(column)
                source = inner.sources.get(column.table)
                if isinstance(source, exp.Table):
                    choose(side, {(source.db, source.name, column.name)})
                elif isinstance(source, Scope):  # a CTE or a subquery: its column's own reads
                    node = to_node(column.name, source, dialect, known, trim_selects=False)
                    choose(side, tables(node), node)
            for projection in row_projections(inner):
                node = to_node(projection.alias_or_name, inner, dialect, known, trim_selects=False)
                choose(None if chooses(inner) else contained_by(projection), tables(node), node)
        for side in leaked:
            rows |= values.pop(side)
        for column, node in nodes.items():  # a side's choices: values of what reads it
            sources = {id(n.source) for n in node.walk()}
            for side, read in values.items():
                if side in sources:
                    out[column] |= read
        return {column: sorted(reads) for column, reads in out.items()}, sorted(rows)
    except SqlglotError as exc:
        raise Underivable(str(exc).splitlines()[0]) from exc


def lineage_metadata(
    columns: Mapping[str, list[ColumnRef]],
    asset_key: Callable[[str, str], dg.AssetKey | None],
    rows: list[ColumnRef] = (),  # pyright: ignore[reportArgumentType]
) -> dict:
    """``dagster/column_lineage`` for ``columns``, and ``column_lineage_rows`` for ``rows``;
    ``asset_key(schema, table)`` names the asset of a warehouse table. A table that is no
    asset (None) cannot be a dependency: what reads it is listed in
    ``column_lineage_gaps`` instead of looking like a column that reads nothing."""
    deps: dict[str, list[dg.TableColumnDep]] = {}
    gaps: dict[str, str] = {}

    def keyed(refs, column: str) -> list[tuple[dg.AssetKey, str]]:
        found = [(asset_key(db, table), f"{db}.{table}", name) for db, table, name in refs]
        unknown = sorted({f"{table}.{name}" for key, table, name in found if key is None})
        if unknown:
            gaps[column] = f"reads {', '.join(unknown)}, which is no asset of the platform"
        return [(key, name) for key, _, name in found if key is not None]

    for column, refs in columns.items():
        deps[column] = [dg.TableColumnDep(asset_key=key, column_name=name) for key, name in keyed(refs, column)]
    by_rows = sorted({(key.to_user_string(), name) for key, name in keyed(rows, "(rows)")})
    return {
        COLUMN_LINEAGE: dg.TableColumnLineage(deps_by_column=deps),
        ROW_COLUMNS: dg.MetadataValue.json([{"asset": key, "column": name} for key, name in by_rows]),
        **({LINEAGE_GAPS: dg.MetadataValue.json(gaps)} if gaps else {}),
    }
