"""Column lineage from SQL, on hand-checked queries (each expectation worked out by reading
the query), and against the tables DuckDB really builds from them."""

import duckdb
import pytest

from platform_shared.column_lineage import Underivable, query_lineage, query_reads, warehouse_schema

SCHEMA = {
    "raw": {
        "orders": {"order_id": "BIGINT", "customer_id": "BIGINT", "status": "VARCHAR", "total_cents": "BIGINT"},
        "customers": {"customer_id": "BIGINT", "country": "VARCHAR", "created_at": "TIMESTAMP"},
    }
}


def test_a_rename_and_select_star_through_a_cte_chain():
    sql = """
        with source as (select * from raw.customers),
        renamed as (select customer_id, country as country_code, created_at as signed_up_at from source)
        select * from renamed
    """
    assert query_lineage(sql, SCHEMA) == {
        "customer_id": [("raw", "customers", "customer_id")],
        "country_code": [("raw", "customers", "country")],
        "signed_up_at": [("raw", "customers", "created_at")],
    }


def test_a_join_an_aggregate_and_a_case():
    sql = """
        select
            c.country,
            count(*) as orders,
            sum(case when o.status = 'paid' then o.total_cents else 0 end) / 100.0 as revenue
        from raw.orders as o
        join raw.customers as c on c.customer_id = o.customer_id
        where o.status != 'cancelled'
        group by c.country
    """
    # count(*) reads no column; the join key and the filter choose rows, not values.
    assert query_lineage(sql, SCHEMA) == {
        "country": [("raw", "customers", "country")],
        "orders": [],
        "revenue": [("raw", "orders", "status"), ("raw", "orders", "total_cents")],
    }


def test_filters_joins_and_group_keys_choose_the_rows_at_any_depth():
    """The columns that choose rows, not values: through a CTE, a derived table, a
    subquery in a filter, a positional group key and `using`; not a column a derived
    table only passes on, nor a `select *` that a CTE expands."""
    sql = """
        with paid as (select * from raw.orders where status = 'paid'),
        people as (select customer_id, country as country_code from raw.customers)
        select people.country_code, sum(paid.total_cents) as cents, max(big.n) as n
        from paid
        join people using (customer_id)
        join (select order_id, total_cents as n from raw.orders) as big on big.order_id = paid.order_id
        where people.customer_id in (select customer_id from raw.customers where created_at > '2026-01-01')
        group by 1
    """
    columns, rows = query_reads(sql, SCHEMA)
    assert columns == {
        "country_code": [("raw", "customers", "country")],
        "cents": [("raw", "orders", "total_cents")],
        "n": [("raw", "orders", "total_cents")],
    }
    assert rows == [
        ("raw", "customers", "country"),  # group by 1
        ("raw", "customers", "created_at"),  # the subquery's filter
        ("raw", "customers", "customer_id"),  # using, the filter, the subquery's output
        ("raw", "orders", "customer_id"),  # using
        ("raw", "orders", "order_id"),  # the derived table's join
        ("raw", "orders", "status"),  # the CTE's filter
    ]
    # No filter: no row columns.
    assert query_reads("select country, count(*) as n from raw.customers group by all", SCHEMA)[1] == [
        ("raw", "customers", "country")
    ]
    assert query_reads("select * from raw.orders", SCHEMA)[1] == []
    # Inside a subquery in a filter, every scope chooses rows (a union's branches, a nested
    # subquery); a `limit` makes its `order by` choose them, and so does `distinct on`.
    union = (
        "select order_id from raw.orders where customer_id in "
        "(select customer_id from raw.customers union select total_cents from raw.orders)"
    )
    assert query_reads(union, SCHEMA)[1] == [
        ("raw", "customers", "customer_id"),
        ("raw", "orders", "customer_id"),
        ("raw", "orders", "total_cents"),
    ]
    nested = (
        "select order_id from raw.orders where customer_id in "
        "(select (select max(country) from raw.customers) from raw.orders)"
    )
    assert query_reads(nested, SCHEMA)[1] == [("raw", "customers", "country"), ("raw", "orders", "customer_id")]
    top = "select order_id from raw.orders order by total_cents desc limit 10"
    assert query_reads(top, SCHEMA)[1] == [("raw", "orders", "total_cents")]
    assert query_reads("select order_id from raw.orders order by total_cents", SCHEMA)[1] == []
    latest = "select distinct on (customer_id) order_id from raw.orders order by customer_id, total_cents"
    assert query_reads(latest, SCHEMA)[1] == [("raw", "orders", "customer_id")]
    # An aggregate's own filter computes its value; it chooses no row of the table.
    failed = "select count(*) filter (where status = 'failed') as failed from raw.orders"
    assert query_reads(failed, SCHEMA) == ({"failed": [("raw", "orders", "status")]}, [])


def test_a_left_joined_side_with_one_row_per_key_chooses_values_not_rows():
    """A left join keeps every row of its left side; when the right side groups by the
    columns it is joined on, it adds at most one row to each. Its filter, its group keys
    and the join's condition then change the values read from that side, not which rows
    the query holds (marts/products.sql: products left-join their sales)."""
    sales = (
        "select customer_id, count(*) as orders, sum(total_cents) as cents from raw.orders "
        "where status != 'cancelled' group by customer_id"
    )
    joined = f"with sales as ({sales}) "
    joined += "select c.country, s.orders, s.cents from raw.customers as c "
    joined += "left join sales as s on s.customer_id = c.customer_id"
    chosen = [("raw", "customers", "customer_id"), ("raw", "orders", "customer_id"), ("raw", "orders", "status")]
    assert query_reads(joined, SCHEMA) == (
        {
            "country": [("raw", "customers", "country")],
            "orders": chosen,  # count(*): which orders each customer has
            "cents": sorted([*chosen, ("raw", "orders", "total_cents")]),
        },
        [],
    )
    # The same side as a derived table, under a CTE that the query selects from.
    derived = (
        f"with final as (select c.country, s.cents from raw.customers as c left join ({sales}) as s "
        "on c.customer_id = s.customer_id) select * from final"
    )
    assert query_reads(derived, SCHEMA) == (
        {"country": [("raw", "customers", "country")], "cents": sorted([*chosen, ("raw", "orders", "total_cents")])},
        [],
    )
    # A filter on a value of that side makes its choices choose rows again.
    assert query_reads(joined + " where s.orders > 1", SCHEMA)[1] == chosen
    # Rows again when the side may add several rows to one (grouped by more than the join's
    # columns, or not grouped), when an inner join may drop rows, or when the CTE is read
    # elsewhere too.
    several = joined.replace("group by customer_id", "group by customer_id, status").replace(
        "select customer_id,", "select customer_id, status,"
    )
    assert query_reads(several, SCHEMA)[1] == chosen
    assert query_reads(joined.replace("left join", "join"), SCHEMA)[1] == chosen
    twice = joined.replace(
        "from raw.customers as c", "from raw.customers as c cross join (select max(cents) from sales)"
    )
    assert query_reads(twice, SCHEMA)[1] == chosen


SALES = (
    "select customer_id, count(*) as orders, sum(total_cents) as cents from raw.orders "
    "where status != 'cancelled' group by customer_id"
)
JOINED = (
    f"with sales as ({SALES}) select c.country, s.orders from raw.customers as c "
    "left join sales as s on s.customer_id = c.customer_id"
)
SALES_ROWS = [("raw", "customers", "customer_id"), ("raw", "orders", "customer_id"), ("raw", "orders", "status")]
SCALAR = "(select count(*) from raw.orders o where o.customer_id = c.customer_id and o.status != 'cancelled') as n"


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        # An output named by alias or position in an `order by` cut by a `limit`, `distinct on`.
        (f"{JOINED} order by orders limit 1", SALES_ROWS),
        (f"{JOINED} order by 2 limit 1", SALES_ROWS),
        (JOINED.replace("select c.country", "select distinct on (orders) c.country"), SALES_ROWS),
        (f"select c.country, {SCALAR} from raw.customers c order by n limit 1", SALES_ROWS),
        ("select country from raw.customers order by country limit 1", [("raw", "customers", "country")]),
        # Plain `distinct`, a `union` (not `all`): every output chooses rows.
        (JOINED.replace("select c.country, s.orders", "select distinct s.orders"), SALES_ROWS),
        (f"{JOINED} union select 'x', 99", sorted([*SALES_ROWS, ("raw", "customers", "country")])),
        ("select distinct country from raw.customers", [("raw", "customers", "country")]),
        # `group by all` with a scalar subquery among its keys.
        (f"select {SCALAR}, count(*) as k from raw.customers c group by all", SALES_ROWS),
        # One side's value in another side's join condition, then filtered.
        (
            "with s1 as (select customer_id, max(order_id) as last_order from raw.orders "
            "where status != 'cancelled' group by customer_id), "
            "s2 as (select order_id, max(total_cents) as cents from raw.orders group by order_id) "
            "select c.country from raw.customers c left join s1 on s1.customer_id = c.customer_id "
            "left join s2 on s2.order_id = s1.last_order where s2.cents > 5",
            sorted([*SALES_ROWS, ("raw", "orders", "order_id"), ("raw", "orders", "total_cents")]),
        ),
        # Subqueries outside a select list: a `limit`, a table function's argument.
        (
            "select country from raw.customers order by customer_id "
            "limit (select count(*) from raw.orders where status = 'cancelled')",
            [("raw", "customers", "customer_id"), ("raw", "orders", "status")],
        ),
        (
            "select * from range((select count(*) from raw.orders where status != 'cancelled'))",
            [("raw", "orders", "status")],
        ),
        # A grouped side that still returns several rows per key; a semi join.
        (
            "select c.country, s.oid from raw.customers c left join (select customer_id, unnest(list(order_id)) as oid "
            "from raw.orders where status != 'cancelled' group by customer_id) s on s.customer_id = c.customer_id",
            SALES_ROWS,
        ),
        (JOINED.replace("left join", "left semi join").replace(", s.orders", ""), SALES_ROWS),
    ],
)
def test_what_chooses_the_rows_of_a_side_s_value_still_chooses_rows(sql, rows):
    """Which rows each query holds (or how many) depends on every column listed: those
    with orders.status were checked in DuckDB by a review, flipping one order between
    'cancelled' and 'paid' changed the result's rows. Over-reporting is allowed, not this."""
    assert query_reads(sql, SCHEMA)[1] == rows


def test_a_scalar_subquery_s_filter_chooses_its_value_not_rows():
    """A subquery in a select list gives one value per row: its filter (and the outer
    column it correlates with) choose what that value reads, not which rows there are."""
    top = (
        "select c.country, (select max(o.total_cents) from raw.orders as o "
        "where o.customer_id = c.customer_id and o.status = 'paid') as top from raw.customers as c"
    )
    reads = [("raw", "customers", "customer_id"), ("raw", "orders", "customer_id"), ("raw", "orders", "status")]
    assert query_reads(top, SCHEMA) == (
        {"country": [("raw", "customers", "country")], "top": sorted([*reads, ("raw", "orders", "total_cents")])},
        [],
    )
    # A derived table inside it: the same. A filter on its value: rows again.
    inside = (
        "select c.country, (select max(t) from (select total_cents as t from raw.orders "
        "where status = 'paid') as d) as top from raw.customers as c"
    )
    assert query_reads(inside, SCHEMA)[1] == []
    assert query_reads(f"with x as ({top}) select * from x where top > 5", SCHEMA)[1] == sorted(
        [*reads, ("raw", "orders", "total_cents")]
    )


def test_a_window_function_reads_its_partition_and_order_columns():
    sql = """
        select order_id,
            row_number() over (partition by customer_id order by total_cents desc) as rank_in_customer
        from raw.orders
    """
    assert query_lineage(sql, SCHEMA) == {
        "order_id": [("raw", "orders", "order_id")],
        "rank_in_customer": [("raw", "orders", "customer_id"), ("raw", "orders", "total_cents")],
    }


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
def test_a_named_window_reads_its_partition_and_order_columns(dialect):
    sql = """
        select order_id,
            sum(total_cents) over w as running,
            max(total_cents) over (w rows between 1 preceding and current row) as recent
        from raw.orders
        window w as (partition by customer_id order by order_id)
    """
    both = [("raw", "orders", "customer_id"), ("raw", "orders", "order_id"), ("raw", "orders", "total_cents")]
    assert query_lineage(sql, SCHEMA, dialect) == {
        "order_id": [("raw", "orders", "order_id")],
        "running": both,
        "recent": both,
    }


def test_a_named_window_is_its_own_select_s_and_an_extended_one_keeps_its_partition():
    sql = """
        select order_id,
            (select max(c.created_at) over w from raw.customers as c window w as (partition by c.country)) as top,
            sum(total_cents) over (w order by order_id) as running
        from raw.orders
        window w as (partition by customer_id)
    """
    assert query_lineage(sql, SCHEMA) == {
        "order_id": [("raw", "orders", "order_id")],
        "top": [("raw", "customers", "country"), ("raw", "customers", "created_at")],
        "running": [("raw", "orders", "customer_id"), ("raw", "orders", "order_id"), ("raw", "orders", "total_cents")],
    }


def test_a_union_reads_both_branches_and_the_database_name_is_ignored():
    sql = """
        select customer_id as id from "wh_1"."raw"."customers"
        union all
        select order_id from "wh_1"."raw"."orders"
    """
    assert query_lineage(sql, SCHEMA) == {"id": [("raw", "customers", "customer_id"), ("raw", "orders", "order_id")]}


def test_an_unknown_table_or_column_is_underivable_with_the_reason():
    with pytest.raises(Underivable, match="missing"):
        query_lineage("select * from raw.missing", SCHEMA)
    with pytest.raises(Underivable, match="nope"):
        query_lineage("select nope from raw.orders", SCHEMA)


def test_the_lineage_names_exactly_the_columns_duckdb_builds():
    with duckdb.connect() as conn:
        conn.execute("create schema raw")
        conn.execute(
            "create table raw.orders (order_id bigint, customer_id bigint, status varchar, total_cents bigint)"
        )
        conn.execute("create table raw.customers (customer_id bigint, country varchar, created_at timestamp)")
        assert warehouse_schema(conn) == SCHEMA
        sql = "select c.*, o.order_id from raw.customers c left join raw.orders o using (customer_id)"
        conn.execute(f"create table raw.joined as {sql}")
        built = [r[0] for r in conn.execute("describe raw.joined").fetchall()]
    assert list(query_lineage(sql, SCHEMA)) == built


def test_a_column_that_reads_a_table_which_is_no_asset_is_a_gap_not_a_constant():
    import dagster as dg

    from platform_shared.column_lineage import COLUMN_LINEAGE, LINEAGE_GAPS, ROW_COLUMNS, lineage_metadata

    def asset_key(schema: str, table: str) -> dg.AssetKey | None:
        return dg.AssetKey(["raw", table]) if schema == "raw" else None

    meta = lineage_metadata(
        {"a": [("raw", "orders", "id"), ("scratch", "rates", "rate")], "b": [("raw", "orders", "total")]},
        asset_key,
        [("scratch", "rates", "valid_to"), ("raw", "orders", "status")],
    )
    deps = meta[COLUMN_LINEAGE].deps_by_column
    assert [(d.asset_key, d.column_name) for d in deps["a"]] == [(dg.AssetKey(["raw", "orders"]), "id")]
    assert meta[LINEAGE_GAPS].value == {
        "a": "reads scratch.rates.rate, which is no asset of the platform",
        "(rows)": "reads scratch.rates.valid_to, which is no asset of the platform",
    }
    assert meta[ROW_COLUMNS].value == [{"asset": "raw/orders", "column": "status"}]
    assert LINEAGE_GAPS not in lineage_metadata({"b": [("raw", "orders", "total")]}, asset_key)
