with

order_items as (
    select * from {{ ref('stg_app__order_items') }}
),

orders as (
    select * from {{ ref('stg_app__orders') }}
),

products as (
    select * from {{ ref('stg_app__products') }}
),

joined as (
    select
        order_items.order_item_id,
        order_items.order_id,
        order_items.product_id,
        products.product_name,
        products.category,
        orders.order_status,
        orders.order_date,
        order_items.quantity,
        order_items.unit_price,
        order_items.line_total
    from order_items
    inner join orders on order_items.order_id = orders.order_id
    left join products on order_items.product_id = products.product_id
)

select * from joined
