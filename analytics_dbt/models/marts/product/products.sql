with

products as (
    select * from {{ ref('stg_app__products') }}
),

lines as (
    select * from {{ ref('int_order_items_joined') }}
),

sales as (
    select
        product_id,
        count(distinct order_id) as orders,
        cast(sum(quantity) as bigint) as units_sold,
        sum(line_total) as gross_revenue,
        cast(sum(case when order_status = 'returned' then quantity else 0 end) as bigint) as units_returned,
        max(order_date) as last_sold_on
    from lines
    where order_status != 'cancelled'
    group by product_id
),

final as (
    select
        products.product_id,
        products.product_name,
        products.category,
        products.price,
        products.is_active,
        coalesce(sales.orders, 0) as orders,
        coalesce(sales.units_sold, 0) as units_sold,
        coalesce(sales.gross_revenue, 0) as gross_revenue,
        coalesce(sales.units_returned, 0) as units_returned,
        case
            when coalesce(sales.units_sold, 0) = 0 then 0
            else cast(sales.units_returned as double precision) / sales.units_sold
        end as return_rate,
        sales.last_sold_on
    from products
    left join sales on products.product_id = sales.product_id
)

select * from final
