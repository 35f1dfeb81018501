{#- A model's +schema is the warehouse schema itself ("olist"), not dbt's
    default "<target schema>_olist". -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name if custom_schema_name is not none else target.schema }}
{%- endmacro %}
