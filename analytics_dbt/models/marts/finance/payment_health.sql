{#- Daily: see macros/daily_partition.sql. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        tags=['daily'],
        pre_hook="{{ delete_daily_window('payment_date') }}"
    )
}}

with

payments as (
    select * from {{ ref('stg_app__payments') }}
    where {{ daily_window('cast(created_at as date)') }}
),

daily as (
    select
        cast(created_at as date) as payment_date,
        payment_method,
        count(*) as attempts,
        count(*) filter (where payment_status = 'failed') as failed,
        count(*) filter (where payment_status = 'refunded') as refunded,
        -- The contract's type, explicitly: an incremental run on PostgreSQL compares the
        -- new rows' types (a bare numeric) with the table's and would refuse them.
        cast(sum(case when payment_status = 'succeeded' then amount else 0 end) as decimal(38, 2)) as amount_captured,
        cast(sum(case when payment_status = 'refunded' then amount else 0 end) as decimal(38, 2)) as amount_refunded
    from payments
    group by 1, 2
),

final as (
    select
        payment_date,
        payment_method,
        attempts,
        failed,
        refunded,
        amount_captured,
        amount_refunded,
        cast(failed as double precision) / attempts as failure_rate,
        cast(refunded as double precision) / attempts as refund_rate
    from daily
)

select * from final
