with

source as (
    select * from {{ source('app', 'products') }}
),

renamed as (
    select
        product_id,
        sku,
        name as product_name,
        category,
        is_active,
        {{ cents_to_dollars('price_cents') }} as price,
        created_at,
        updated_at
    from source
)

select * from renamed
