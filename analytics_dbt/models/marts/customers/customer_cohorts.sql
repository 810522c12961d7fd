with

orders as (
    select * from {{ ref('orders') }}
),

active_months as (
    select distinct
        customer_id,
        date_trunc('month', ordered_at) as active_month
    from orders
    where order_status != 'cancelled'
),

activity as (
    select
        customer_id,
        active_month,
        min(active_month) over (partition by customer_id) as cohort_month
    from active_months
),

cohort_sizes as (
    select
        cohort_month,
        count(distinct customer_id) as cohort_customers
    from activity
    group by cohort_month
),

retention as (
    select
        cohort_month,
        -- Whole months between two month starts (date_part: the same on DuckDB and PostgreSQL).
        cast(
            (date_part('year', active_month) - date_part('year', cohort_month)) * 12
            + date_part('month', active_month) - date_part('month', cohort_month) as bigint
        ) as months_since_first,
        count(distinct customer_id) as active_customers
    from activity
    group by cohort_month, months_since_first
),

final as (
    select
        cast(retention.cohort_month as date) as cohort_month,
        retention.months_since_first,
        cohort_sizes.cohort_customers,
        retention.active_customers,
        cast(retention.active_customers as double precision) / cohort_sizes.cohort_customers as retention_rate
    from retention
    inner join cohort_sizes on retention.cohort_month = cohort_sizes.cohort_month
)

select * from final
