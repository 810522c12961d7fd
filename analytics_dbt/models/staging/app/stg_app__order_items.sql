with

source as (
    select * from {{ source('app', 'order_items') }}
),

renamed as (
    select
        order_item_id,
        order_id,
        product_id,
        quantity,
        {{ cents_to_dollars('unit_price_cents') }} as unit_price,
        {{ cents_to_dollars('quantity * unit_price_cents') }} as line_total,
        created_at,
        updated_at
    from source
)

select * from renamed
