with

orders as (
    select * from {{ ref('orders') }}
),

daily as (
    select
        order_date,
        count(*) as orders,
        count(*) filter (where is_first_order) as first_orders,
        count(distinct customer_id) as customers,
        sum(case when is_revenue then order_total else 0 end) as gross_revenue,
        sum(amount_refunded) as refunds,
        sum(amount_paid) as net_revenue
    from orders
    group by order_date
)

select * from daily
