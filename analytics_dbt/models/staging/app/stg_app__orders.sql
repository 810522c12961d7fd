with

source as (
    select * from {{ source('app', 'orders') }}
),

renamed as (
    select
        order_id,
        customer_id,
        status as order_status,
        {{ cents_to_dollars('total_cents') }} as order_total,
        created_at as ordered_at,
        cast(created_at as date) as order_date,
        updated_at
    from source
)

select * from renamed
