with

source as (
    select * from {{ source('app', 'web_sessions') }}
),

renamed as (
    select
        session_id,
        customer_id,
        order_id,
        traffic_source,
        device,
        pages_viewed,
        funnel_step,
        started_at,
        cast(started_at as date) as session_date,
        updated_at
    from source
)

select * from renamed
