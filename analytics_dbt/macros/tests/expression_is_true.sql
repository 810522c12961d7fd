{# A row invariant, as dbt_utils.expression_is_true (the dbt hub is out of reach here):
   fails with the rows for which the expression is not true. #}
{% test expression_is_true(model, expression, column_name=none, where=none) %}
select *
from {{ model }}
where not ({{ expression }})
{% if where %} and ({{ where }}){% endif %}
{% endtest %}
