{# The position of a funnel step: visit 1 ... purchase 5. #}
{% macro funnel_rank(column_name) -%}
    case {{ column_name }}
        when 'visit' then 1
        when 'product_view' then 2
        when 'cart' then 3
        when 'checkout' then 4
        when 'purchase' then 5
    end
{%- endmacro %}
