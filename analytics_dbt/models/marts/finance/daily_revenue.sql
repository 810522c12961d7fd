{#- Daily: see macros/daily_partition.sql. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        tags=['daily'],
        pre_hook="{{ delete_daily_window('order_date') }}"
    )
}}

with

orders as (
    select * from {{ ref('orders') }}
    where {{ daily_window('order_date') }}
),

daily as (
    select
        order_date,
        count(*) as orders,
        count(*) filter (where is_first_order) as first_orders,
        count(distinct customer_id) as customers,
        -- The contract's type, explicitly: an incremental run on PostgreSQL compares the
        -- new rows' types (a bare numeric) with the table's and would refuse them.
        cast(sum(case when is_revenue then order_total else 0 end) as decimal(38, 2)) as gross_revenue,
        cast(sum(amount_refunded) as decimal(38, 2)) as refunds,
        cast(sum(amount_paid) as decimal(38, 2)) as net_revenue
    from orders
    group by order_date
)

select * from daily
