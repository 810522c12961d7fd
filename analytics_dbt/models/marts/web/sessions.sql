{#
    Incremental and daily (macros/daily_partition.sql). A run for a window of days (a
    Dagster partition or backfill) deletes those days and rebuilds them from upstream.
    A plain run (`dbt build`), and a window that reaches the newest day, also merges the
    sessions updated within the lookback window (late updates, whatever their day), and
    its post-hook deletes sessions that are gone upstream (hard deletes), so the table
    equals a full refresh.
#}
{{
    config(
        materialized='incremental',
        unique_key='session_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        tags=['daily'],
        pre_hook="{% if is_incremental() and var('min_date', none) is not none %}delete from {{ this }} where {{ in_window('session_date') }}{% endif %}",
        post_hook="{% if is_incremental() and catching_up() %}delete from {{ this }} where session_id not in (select session_id from {{ ref('stg_app__web_sessions') }}){% endif %}"
    )
}}

with

sessions as (
    select * from {{ ref('stg_app__web_sessions') }}
    {% if is_incremental() and not catching_up() %}
        where {{ in_window('session_date') }}
    {% elif is_incremental() %}
        where updated_at >= (
            select max(updated_at) - interval '{{ var('session_lookback_days', 3) }} days'
            from {{ this }}
        )
        {% if var('min_date', none) is not none %} or ({{ in_window('session_date') }}){% endif %}
    {% endif %}
),

final as (
    select
        session_id,
        customer_id,
        order_id,
        session_date,
        started_at,
        updated_at,
        traffic_source,
        device,
        pages_viewed,
        funnel_step,
        {{ funnel_rank('funnel_step') }} as funnel_rank,
        customer_id is null as is_anonymous
    from sessions
)

select * from final
