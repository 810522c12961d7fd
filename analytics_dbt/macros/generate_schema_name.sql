{# Models go to the schema named in dbt_project.yml (staging, marts), not <target>_<schema>. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
