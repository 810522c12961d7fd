{#
    Daily partitions. Dagster runs the models tagged `daily` one window of days at a time
    (a partition, or a backfill's range in one run) and passes it as
    --vars '{min_date: ..., max_date: ...}' (min inclusive, max exclusive; see
    platform_analytics/component.py). On an existing table such a run deletes those days
    and rebuilds them from upstream: other days are untouched. Without the variables (a
    plain `dbt build`) and on the first build, a model builds every day.
#}

{% macro daily_window(column) -%}
    {%- if is_incremental() and var('min_date', none) is not none -%}
        {{ column }} >= cast('{{ var("min_date") }}' as date) and {{ column }} < cast('{{ var("max_date") }}' as date)
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{# The pre-hook of a daily model: the window's days go (every day without a window). #}
{% macro delete_daily_window(column) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ daily_window(column) }}
    {%- endif -%}
{%- endmacro %}
