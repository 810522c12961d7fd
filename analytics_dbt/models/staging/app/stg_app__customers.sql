with

source as (
    select * from {{ source('app', 'customers') }}
),

renamed as (
    select
        customer_id,
        email,
        first_name,
        last_name,
        country as country_code,
        signup_channel,
        created_at as signed_up_at,
        updated_at
    from source
)

select * from renamed
