with

customers as (
    select * from {{ ref('stg_app__customers') }}
),

orders as (
    select * from {{ ref('orders') }}
),

customer_orders as (
    select
        customer_id,
        count(*) as order_count,
        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at,
        sum(amount_paid) as lifetime_value,
        sum(amount_refunded) as lifetime_refunds
    from orders
    group by customer_id
),

final as (
    select
        customers.customer_id,
        customers.country_code,
        customers.signup_channel,
        customers.signed_up_at,
        customer_orders.first_ordered_at,
        customer_orders.last_ordered_at,
        coalesce(customer_orders.order_count, 0) as order_count,
        coalesce(customer_orders.lifetime_value, 0) as lifetime_value,
        coalesce(customer_orders.lifetime_refunds, 0) as lifetime_refunds,
        coalesce(customer_orders.order_count, 0) > 1 as is_repeat_buyer
    from customers
    left join customer_orders on customers.customer_id = customer_orders.customer_id
)

select * from final
