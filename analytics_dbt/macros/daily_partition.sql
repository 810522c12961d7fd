{#
    Daily partitions. Dagster runs the models tagged `daily` one window of days at a time
    (a partition, or a backfill's range in one run) and passes it as
    --vars '{min_date: ..., max_date: ..., catch_up: ...}' (min inclusive, max exclusive;
    see platform_analytics/component.py). On an existing table such a run deletes those
    days and rebuilds them from upstream: other days are untouched.

    Unless the window reaches the newest day (catch_up: automation and `make run`): then
    the run also applies what changed upstream on any other day since the last build (a
    session updated a week later, a deleted order), as a plain `dbt build` does, so that
    keeping the newest days current never leaves older days behind. Without the variables
    (a plain `dbt build`) and on the first build, a model builds every day.
#}

{# The run's window of days as a filter on `column` (`true` without one). #}
{% macro in_window(column) -%}
    {%- if is_incremental() and var('min_date', none) is not none -%}
        {{ column }} >= cast('{{ var("min_date") }}' as date) and {{ column }} < cast('{{ var("max_date") }}' as date)
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{# Whether the run applies upstream changes of every day: no window, or one that reaches the newest day. #}
{% macro catching_up() -%}
    {{- return(var('min_date', none) is none or var('catch_up', false)) -}}
{%- endmacro %}

{# The days a daily aggregate rebuilds: the window, or every day when catching up. #}
{% macro daily_window(column) -%}
    {%- if catching_up() -%}
        true
    {%- else -%}
        {{ in_window(column) }}
    {%- endif -%}
{%- endmacro %}

{# The pre-hook of a daily aggregate: the days it rebuilds go first. #}
{% macro delete_daily_window(column) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ daily_window(column) }}
    {%- endif -%}
{%- endmacro %}
