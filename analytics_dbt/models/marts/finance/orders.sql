with

orders as (
    select * from {{ ref('stg_app__orders') }}
),

order_items as (
    select * from {{ ref('stg_app__order_items') }}
),

payments as (
    select * from {{ ref('stg_app__payments') }}
),

item_totals as (
    select
        order_id,
        count(*) as item_lines,
        cast(sum(quantity) as bigint) as item_quantity,
        sum(line_total) as items_total
    from order_items
    group by order_id
),

payment_totals as (
    select
        order_id,
        sum(case when payment_status = 'succeeded' then amount else 0 end) as amount_paid,
        sum(case when payment_status = 'refunded' then amount else 0 end) as amount_refunded,
        count(*) filter (where payment_status = 'failed') as failed_payments
    from payments
    group by order_id
),

joined as (
    select
        orders.order_id,
        orders.customer_id,
        orders.order_status,
        orders.ordered_at,
        orders.order_date,
        orders.order_total,
        coalesce(item_totals.item_lines, 0) as item_lines,
        coalesce(item_totals.item_quantity, 0) as item_quantity,
        coalesce(item_totals.items_total, 0) as items_total,
        coalesce(payment_totals.amount_paid, 0) as amount_paid,
        coalesce(payment_totals.amount_refunded, 0) as amount_refunded,
        coalesce(payment_totals.failed_payments, 0) as failed_payments,
        row_number() over (
            partition by orders.customer_id order by orders.ordered_at, orders.order_id
        ) as customer_order_number
    from orders
    left join item_totals on orders.order_id = item_totals.order_id
    left join payment_totals on orders.order_id = payment_totals.order_id
),

final as (
    select
        *,
        customer_order_number = 1 as is_first_order,
        order_status not in ('cancelled', 'returned') as is_revenue
    from joined
)

select * from final
