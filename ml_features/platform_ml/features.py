"""Customer features as of cut-off dates, from the raw tables, with no leakage.

Raw tables hold the current state of each row, so every feature is computed from what
was true before the cut-off:
- events by their own time: orders and order items by ``created_at``, sessions by
  ``started_at``, refunds by the payment's ``updated_at`` (when it became a refund);
- mutable customer attributes (country, signup channel) from ``raw.customers_history``,
  which the ingestion catalog keeps (``history: scd2``): the version whose source
  ``updated_at`` is the newest before the cut-off. Versions older than the first load
  are unknown, so the first known version counts as valid from the beginning.
Order status is current state with no history, so no feature uses it.

The label, churn, looks at the 60 days after the cut-off and is null where that window
is not over yet.
"""

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:  # pandas is imported when a step runs (model.py says why)
    import pandas as pd

from platform_shared import HISTORY_SUFFIX, RAW_SCHEMA, raw_asset_key, replace_table
from platform_shared.column_lineage import (
    LINEAGE_GAPS,
    Underivable,
    lineage_metadata,
    query_reads,
    sql_dialect,
    warehouse_schema,
)
from platform_shared.keys import FEATURES_PREFIX

FEATURES_SCHEMA = FEATURES_PREFIX  # the key prefix is the schema
FEATURE_TABLE = "customer_features"
CHURN_WINDOW_DAYS = 60
NUMERIC_FEATURES = [
    "tenure_days",
    "frequency",
    "recency_days",
    "monetary",
    "avg_order_value",
    "items_per_order",
    "distinct_products",
    "refund_rate",
    "sessions_30d",
    "cart_sessions_30d",
]
CATEGORICAL_FEATURES = ["country", "signup_channel"]
FEATURE_COLUMNS = NUMERIC_FEATURES + CATEGORICAL_FEATURES
# How many monthly snapshots before the newest labelled one go into training.
TRAINING_SNAPSHOTS = 6
# The walk-forward backtest: how many month starts (the newest whose churn window is over)
# the evaluation covers when the features are built; older folds stay once evaluated.
BACKTEST_FOLDS = 4

_CUSTOMER_VERSIONS = {
    # With history: each version is valid from its source updated_at to the next one's.
    True: f"""
        select
            customer_id, created_at, country, signup_channel,
            case when row_number() over w = 1 then '-infinity'::timestamp else updated_at end
                as known_from,
            coalesce(lead(updated_at) over w, 'infinity'::timestamp) as known_to
        from {RAW_SCHEMA}.customers{HISTORY_SUFFIX}
        window w as (partition by customer_id order by updated_at, valid_from)
    """,
    # Without history only the current state is known: attributes may leak.
    False: f"""
        select customer_id, created_at, country, signup_channel,
            '-infinity'::timestamp as known_from, 'infinity'::timestamp as known_to
        from {RAW_SCHEMA}.customers
    """,
}

# The SQL runs on DuckDB and on PostgreSQL alike: day counts as date differences,
# intervals as strings, explicit casts where integer division would differ.
_FEATURES_SQL = f"""
with

cutoffs as (
    select cast(v.as_of as timestamp) as as_of from (values {{cutoffs}}) as v(as_of)
),

customer_versions as ({{customer_versions}}),

orders as (
    select order_id, customer_id, created_at, total_cents from {RAW_SCHEMA}.orders
),

items as (
    select o.customer_id, i.order_id, i.product_id, i.quantity, i.created_at
    from {RAW_SCHEMA}.order_items as i
    join orders as o on o.order_id = i.order_id
),

refunds as (
    select o.customer_id, p.updated_at as refunded_at
    from {RAW_SCHEMA}.payments as p
    join orders as o on o.order_id = p.order_id
    where p.status = 'refunded'
),

sessions as (
    select customer_id, started_at, funnel_step from {RAW_SCHEMA}.web_sessions
    where customer_id is not null
),

customers_as_of as (
    select c.as_of, v.customer_id, v.created_at, v.country, v.signup_channel
    from cutoffs as c
    join customer_versions as v
        on v.created_at < c.as_of and v.known_from <= c.as_of and c.as_of < v.known_to
),

order_stats as (
    select
        c.as_of,
        o.customer_id,
        count(*) as frequency,
        cast(c.as_of as date) - cast(max(o.created_at) as date) as recency_days,
        cast(sum(o.total_cents) as double precision) / 100 as monetary
    from cutoffs as c
    join orders as o on o.created_at < c.as_of
    group by c.as_of, o.customer_id
),

item_stats as (
    select c.as_of, i.customer_id, sum(i.quantity) as units, count(distinct i.product_id) as products
    from cutoffs as c
    join items as i on i.created_at < c.as_of
    group by 1, 2
),

refund_stats as (
    select c.as_of, r.customer_id, count(*) as refunds
    from cutoffs as c
    join refunds as r on r.refunded_at < c.as_of
    group by 1, 2
),

session_stats as (
    select
        c.as_of,
        s.customer_id,
        count(*) as sessions_30d,
        count(*) filter (where s.funnel_step in ('cart', 'checkout', 'purchase')) as cart_sessions_30d
    from cutoffs as c
    join sessions as s
        on s.started_at < c.as_of and s.started_at >= c.as_of - interval '30 days'
    group by 1, 2
),

future_orders as (
    select c.as_of, o.customer_id, count(*) as orders_next
    from cutoffs as c
    join orders as o
        on o.created_at >= c.as_of
        and o.created_at < c.as_of + interval '{CHURN_WINDOW_DAYS} days'
    group by 1, 2
),

horizon as (
    select date_trunc('day', max(created_at)) + interval '1 day' as last_seen from orders
),

final as (
    select
        cu.as_of,
        cu.customer_id,
        cast(cu.as_of as date) - cast(cu.created_at as date) as tenure_days,
        os.frequency,
        os.recency_days,
        os.monetary,
        os.monetary / os.frequency as avg_order_value,
        cast(coalesce(its.units, 0) as double precision) / os.frequency as items_per_order,
        coalesce(its.products, 0) as distinct_products,
        least(cast(coalesce(rs.refunds, 0) as double precision) / os.frequency, 1.0) as refund_rate,
        coalesce(ss.sessions_30d, 0) as sessions_30d,
        coalesce(ss.cart_sessions_30d, 0) as cart_sessions_30d,
        cu.country,
        cu.signup_channel,
        case
            when cu.as_of + interval '{CHURN_WINDOW_DAYS} days' > h.last_seen then null
            else coalesce(fo.orders_next, 0) = 0
        end as churned
    from customers_as_of as cu
    cross join horizon as h
    -- Churn is defined for customers who have bought before the cut-off.
    join order_stats as os on os.as_of = cu.as_of and os.customer_id = cu.customer_id
    left join item_stats as its on its.as_of = cu.as_of and its.customer_id = cu.customer_id
    left join refund_stats as rs on rs.as_of = cu.as_of and rs.customer_id = cu.customer_id
    left join session_stats as ss on ss.as_of = cu.as_of and ss.customer_id = cu.customer_id
    left join future_orders as fo on fo.as_of = cu.as_of and fo.customer_id = cu.customer_id
)

select * from final order by as_of, customer_id
"""


def snapshot_dates(last_event: datetime) -> list[datetime]:
    """Cut-offs: today (to score), the newest one whose churn window is over (to test),
    and monthly ones before it (to train), the newest of them a whole churn window
    before the test cut-off: a training label looks ``CHURN_WINDOW_DAYS`` ahead, and
    must not see orders placed after the test cut-off (it used to: training snapshots
    30 days apart from the test one learned from the test period's orders).

    Example:
        >>> [d.date().isoformat() for d in snapshot_dates(datetime(2026, 6, 30, 12))][:3]
        ['2026-07-01', '2026-05-02', '2026-03-03']
    """
    today = datetime.combine(last_event.date() + timedelta(days=1), datetime.min.time())
    test = today - timedelta(days=CHURN_WINDOW_DAYS)
    train = [test - timedelta(days=CHURN_WINDOW_DAYS + 30 * k) for k in range(TRAINING_SNAPSHOTS)]
    return [today, test, *train]


def _month_start(day: date, months_back: int = 0) -> datetime:
    year, month = divmod(day.year * 12 + day.month - 1 - months_back, 12)
    return datetime(year, month + 1, 1)


def backtest_cutoffs(last_event: datetime, folds: int = BACKTEST_FOLDS) -> list[datetime]:
    """The test cut-offs of the walk-forward backtest, oldest first: the newest ``folds``
    month starts whose churn window is over by the data's today (``snapshot_dates``).
    Month starts, not days counted back from today: a fold keeps its cut-off from one day
    to the next, so it is a stable partition and a new month is one new partition.

    Example:
        >>> [d.date().isoformat() for d in backtest_cutoffs(datetime(2026, 6, 30, 12))]
        ['2026-02-01', '2026-03-01', '2026-04-01', '2026-05-01']
    """
    today, test, *_ = snapshot_dates(last_event)
    return [_month_start(test.date(), k) for k in reversed(range(folds))]


def fold_training_cutoffs(test: datetime) -> list[datetime]:
    """What the fold tested at ``test`` trains on, oldest first: the ``TRAINING_SNAPSHOTS``
    month starts whose churn label window is over by ``test`` (what was known then).

    Example:
        >>> [d.date().isoformat() for d in fold_training_cutoffs(datetime(2026, 5, 1))]
        ['2025-10-01', '2025-11-01', '2025-12-01', '2026-01-01', '2026-02-01', '2026-03-01']
    """
    newest = (test - timedelta(days=CHURN_WINDOW_DAYS)).date()
    return [_month_start(newest, k) for k in reversed(range(TRAINING_SNAPSHOTS))]


def fold_features(conn, tests: list[datetime]) -> "pd.DataFrame":
    """The point-in-time features of every snapshot the folds tested at ``tests`` need
    (one query for all of them: the folds share most of their training snapshots)."""
    cutoffs = sorted({*tests, *(c for t in tests for c in fold_training_cutoffs(t))})
    return conn.execute(features_sql(conn, cutoffs)).df()


def has_customer_history(conn) -> bool:
    (n,) = conn.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [RAW_SCHEMA, f"customers{HISTORY_SUFFIX}"],
    ).fetchall()[0]
    return n == 1


def features_sql(conn, cutoffs: list[datetime]) -> str:
    """The feature table's query for the given cut-offs, on this warehouse's raw tables."""
    return feature_query(cutoffs, point_in_time=has_customer_history(conn))


def feature_query(cutoffs: list[datetime], point_in_time: bool) -> str:
    """The feature table's query, reading ``raw.customers_history`` when ``point_in_time``
    (the catalog keeps it), else ``raw.customers``; `make check` qualifies it before any run."""
    return _FEATURES_SQL.replace("{customer_versions}", _CUSTOMER_VERSIONS[point_in_time]).replace(
        "{cutoffs}", ", ".join(f"('{c.isoformat(sep=' ')}')" for c in cutoffs)
    )


def build_features(conn, cutoffs: list[datetime]) -> str:
    """(Re)build the feature table for the given cut-offs; returns the query it ran."""
    conn.execute(f"create schema if not exists {FEATURES_SCHEMA}").fetchall()
    sql = features_sql(conn, cutoffs)
    replace_table(conn, FEATURES_SCHEMA, FEATURE_TABLE, sql)
    return sql


def raw_table_asset(schema: str, table: str) -> dg.AssetKey | None:
    """The asset of a raw warehouse table (its history table belongs to the same asset)."""
    return raw_asset_key(table.removesuffix(HISTORY_SUFFIX)) if schema == RAW_SCHEMA else None


def feature_lineage(conn, sql: str) -> dict:
    """``dagster/column_lineage`` of the feature table: each column's raw columns (or,
    when the SQL cannot be followed, the gaps with the reason)."""
    try:
        columns, rows = query_reads(sql, warehouse_schema(conn), dialect=sql_dialect(conn))
    except Underivable as exc:
        return {
            LINEAGE_GAPS: dg.MetadataValue.json(
                {c: str(exc) for c in ["as_of", "customer_id", *FEATURE_COLUMNS, "churned"]}
            )
        }
    return lineage_metadata(columns, raw_table_asset, rows)


def last_event_time(conn) -> datetime:
    return conn.execute(f"select max(created_at) from {RAW_SCHEMA}.orders").fetchall()[0][0]


# What a healthy feature table looks like: (SQL that counts offending rows, what it means).
FEATURE_RULES = [(f"{c} is null", f"{c} is null") for c in FEATURE_COLUMNS] + [
    ("tenure_days < 0 or recency_days < 0", "negative tenure or recency"),
    ("recency_days > tenure_days", "last order before signup"),
    ("frequency < 1", "a customer without orders"),
    ("monetary < 0 or avg_order_value < 0", "negative spend"),
    ("refund_rate not between 0 and 1", "refund rate outside [0, 1]"),
    ("cart_sessions_30d > sessions_30d or sessions_30d < 0", "impossible session counts"),
]


def feature_problems(conn) -> dict[str, int]:
    """Rows breaking each rule in the feature table (only the rules with offenders), plus
    duplicate (as_of, customer_id) pairs."""
    table = f"{FEATURES_SCHEMA}.{FEATURE_TABLE}"
    counts = conn.execute(
        "select " + ", ".join(f"count(*) filter (where {sql})" for sql, _ in FEATURE_RULES) + f" from {table}"
    ).fetchall()[0]
    problems = {name: n for (_, name), n in zip(FEATURE_RULES, counts, strict=True) if n}
    (dupes,) = conn.execute(
        f"select count(*) from (select as_of, customer_id from {table} group by as_of, customer_id "
        "having count(*) > 1) as d"
    ).fetchall()[0]
    if dupes:
        problems["duplicate (as_of, customer_id)"] = dupes
    return problems
