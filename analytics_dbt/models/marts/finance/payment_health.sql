with

payments as (
    select * from {{ ref('stg_app__payments') }}
),

daily as (
    select
        cast(created_at as date) as payment_date,
        payment_method,
        count(*) as attempts,
        count(*) filter (where payment_status = 'failed') as failed,
        count(*) filter (where payment_status = 'refunded') as refunded,
        sum(case when payment_status = 'succeeded' then amount else 0 end) as amount_captured,
        sum(case when payment_status = 'refunded' then amount else 0 end) as amount_refunded
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
