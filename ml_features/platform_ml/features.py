"""Customer features as of cut-off dates, from the raw tables, with no leakage.

Raw tables hold the current state of each row, so every feature uses only rows whose
event time (``created_at``, or ``updated_at`` for a refund) is before the cut-off. The
label, churn, looks at the window after the cut-off and is null where that window is
not over yet.
"""

from datetime import datetime, timedelta

import duckdb
from platform_shared import RAW_SCHEMA

FEATURES_SCHEMA = "features"
FEATURE_TABLE = "customer_features"
CHURN_WINDOW_DAYS = 60
FEATURE_COLUMNS = [
    "tenure_days",
    "frequency",
    "recency_days",
    "monetary",
    "avg_order_value",
    "refund_rate",
    "sessions_30d",
    "cart_sessions_30d",
]
# How many monthly snapshots before the newest labelled one go into training.
TRAINING_SNAPSHOTS = 6

_FEATURES_SQL = f"""
create or replace table {FEATURES_SCHEMA}.{FEATURE_TABLE} as
with

cutoffs as (
    select unnest($cutoffs::timestamp[]) as as_of
),

customers as (
    select customer_id, created_at from {RAW_SCHEMA}.customers
),

orders as (
    select order_id, customer_id, created_at, total_cents from {RAW_SCHEMA}.orders
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

order_stats as (
    select
        c.as_of,
        o.customer_id,
        count(*) as frequency,
        date_diff('day', max(o.created_at), c.as_of) as recency_days,
        sum(o.total_cents) / 100.0 as monetary
    from cutoffs as c
    join orders as o on o.created_at < c.as_of
    group by c.as_of, o.customer_id
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
        on s.started_at < c.as_of and s.started_at >= c.as_of - interval 30 day
    group by 1, 2
),

future_orders as (
    select c.as_of, o.customer_id, count(*) as orders_next
    from cutoffs as c
    join orders as o
        on o.created_at >= c.as_of
        and o.created_at < c.as_of + interval {CHURN_WINDOW_DAYS} day
    group by 1, 2
),

horizon as (
    select date_trunc('day', max(created_at)) + interval 1 day as last_seen from orders
),

final as (
    select
        c.as_of,
        cu.customer_id,
        date_diff('day', cu.created_at, c.as_of) as tenure_days,
        os.frequency,
        os.recency_days,
        os.monetary,
        os.monetary / os.frequency as avg_order_value,
        coalesce(rs.refunds, 0) / os.frequency as refund_rate,
        coalesce(ss.sessions_30d, 0) as sessions_30d,
        coalesce(ss.cart_sessions_30d, 0) as cart_sessions_30d,
        case
            when c.as_of + interval {CHURN_WINDOW_DAYS} day > h.last_seen then null
            else coalesce(fo.orders_next, 0) = 0
        end as churned
    from cutoffs as c
    cross join horizon as h
    join customers as cu on cu.created_at < c.as_of
    -- Churn is defined for customers who have bought before the cut-off.
    join order_stats as os on os.as_of = c.as_of and os.customer_id = cu.customer_id
    left join refund_stats as rs on rs.as_of = c.as_of and rs.customer_id = cu.customer_id
    left join session_stats as ss on ss.as_of = c.as_of and ss.customer_id = cu.customer_id
    left join future_orders as fo on fo.as_of = c.as_of and fo.customer_id = cu.customer_id
)

select * from final order by as_of, customer_id
"""


def snapshot_dates(last_event: datetime) -> list[datetime]:
    """Cut-offs: today (to score), the newest one whose churn window is over (to test),
    and monthly ones before it (to train).

    Example:
        >>> [d.date().isoformat() for d in snapshot_dates(datetime(2026, 6, 30, 12))][:3]
        ['2026-07-01', '2026-05-02', '2026-04-02']
    """
    today = datetime.combine(last_event.date() + timedelta(days=1), datetime.min.time())
    test = today - timedelta(days=CHURN_WINDOW_DAYS)
    train = [test - timedelta(days=30 * (k + 1)) for k in range(TRAINING_SNAPSHOTS)]
    return [today, test, *train]


def build_features(conn: duckdb.DuckDBPyConnection, cutoffs: list[datetime]) -> int:
    """(Re)build the feature table for the given cut-offs; returns its row count."""
    conn.execute(f"create schema if not exists {FEATURES_SCHEMA}")
    conn.execute(_FEATURES_SQL, {"cutoffs": cutoffs})
    return conn.execute(f"select count(*) from {FEATURES_SCHEMA}.{FEATURE_TABLE}").fetchall()[0][0]


def last_event_time(conn: duckdb.DuckDBPyConnection) -> datetime:
    return conn.execute(f"select max(created_at) from {RAW_SCHEMA}.orders").fetchall()[0][0]
