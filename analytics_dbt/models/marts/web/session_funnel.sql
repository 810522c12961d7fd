{#- Daily: see macros/daily_partition.sql. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        tags=['daily'],
        pre_hook="{{ delete_daily_window('session_date') }}"
    )
}}

with

sessions as (
    select * from {{ ref('sessions') }}
    where {{ daily_window('session_date') }}
),

daily as (
    select
        session_date,
        traffic_source,
        count(*) as sessions,
        count(*) filter (where funnel_rank >= 2) as product_views,
        count(*) filter (where funnel_rank >= 3) as carts,
        count(*) filter (where funnel_rank >= 4) as checkouts,
        count(*) filter (where funnel_rank >= 5) as purchases
    from sessions
    group by 1, 2
),

final as (
    select
        *,
        cast(purchases as double precision) / sessions as conversion_rate
    from daily
)

select * from final
