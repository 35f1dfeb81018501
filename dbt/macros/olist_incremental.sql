{#- What the incremental Olist models share. Tributary keeps, beside each
    src_<name>.<table>, <table>_history: every version and delete with the
    source manifest (_tributary_seq) that brought it, and
    _tributary_load_log: the manifests applied. -#}

{#- The _history relation of a source table. -#}
{% macro history_of(source_name, table_name) -%}
    {%- set src = source(source_name, table_name) -%}
    {{ src.incorporate(path={"identifier": src.identifier ~ "_history"}) }}
{%- endmacro %}

{#- The newest manifest applied to a source's warehouse schema. -#}
{% macro loaded_seq(source_name, any_table) -%}
    {%- set src = source(source_name, any_table) -%}
    (select coalesce(max(seq), 0) from {{ api.Relation.create(database=src.database, schema=src.schema, identifier="_tributary_load_log") }})
{%- endmacro %}

{#- The manifest this model had seen at its last build, as a number read
    once per build (a literal gives the planner the true, usually tiny,
    number of changed rows): 0 when it has not kept one (a first build, or
    a table built before it was incremental), so everything is taken. -#}
{% macro seen_seq() -%}
    {%- if not execute -%}
        0
    {%- else -%}
        {%- set columns = adapter.get_columns_in_relation(this) | map(attribute="name") | list -%}
        {%- if "_loaded_seq" in columns -%}
            {%- set result = run_query("select coalesce(max(_loaded_seq), 0) from " ~ this) -%}
            {{ result.columns[0].values()[0] | int }}
        {%- else -%}
            0
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- The orders whose items, order row or payments changed in a manifest
    applied after this model's last build. -#}
{% macro olist_changed_orders() -%}
    {%- set seen = seen_seq() -%}
    select order_id from {{ history_of('olist', 'order_items') }} where _tributary_seq > {{ seen }}
    union
    select order_id from {{ history_of('olist', 'orders') }} where _tributary_seq > {{ seen }}
    union
    select order_id from {{ history_of('olist', 'order_payments') }} where _tributary_seq > {{ seen }}
{%- endmacro %}
