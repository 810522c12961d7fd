{# Money is stored in integer cents in the application; marts show it in dollars. #}
{% macro cents_to_dollars(column_name) -%}
    {{ return(adapter.dispatch('cents_to_dollars')(column_name)) }}
{%- endmacro %}

{% macro default__cents_to_dollars(column_name) -%}
    {#- 100.0: an integer division would drop the cents on PostgreSQL. #}
    cast({{ column_name }} / 100.0 as numeric(16, 2))
{%- endmacro %}
