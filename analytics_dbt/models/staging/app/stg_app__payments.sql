with

source as (
    select * from {{ source('app', 'payments') }}
),

renamed as (
    select
        payment_id,
        order_id,
        method as payment_method,
        status as payment_status,
        {{ cents_to_dollars('amount_cents') }} as amount,
        created_at,
        updated_at
    from source
)

select * from renamed
