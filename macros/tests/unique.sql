{#-
    dbt's `unique` test on DuckDB. A uuid column of a whole relation (every test of a full
    build) is sorted, and each id compared with the one before it: at scale 10000 the 36.0 M
    event ids took 3.1–3.6 s that way and 4.8–5.6 s as dbt's group by (docs/reflection.md,
    run z). Anything else takes dbt's own: a text column, whose sort costs more than the
    group by (the 73-character product_session_id: 18 s against 7 s), and the rows an
    incremental run's test window selects (a subquery, not a relation: few rows either way).
-#}
{% macro duckdb__test_unique(model, column_name) %}
    {%- if not is_uuid_column(model, column_name) -%}
        {{ return(dbt.default__test_unique(model, column_name)) }}
    {%- endif %}

select
    unique_field,
    count(*) + 1 as n_records

from (
    select
        {{ column_name }} as unique_field,
        lag({{ column_name }}) over (order by {{ column_name }}) as previous_field
    from {{ model }}
    where {{ column_name }} is not null
) as sorted_values
where unique_field = previous_field
group by unique_field

{% endmacro %}

{#- Whether `model` is a relation whose column `column_name` has DuckDB's uuid type. -#}
{% macro is_uuid_column(model, column_name) -%}
    {%- if not execute or model is string -%}
        {{ return(false) }}
    {%- endif -%}
    {%- for column in adapter.get_columns_in_relation(model) -%}
        {%- if column.name | lower == column_name | lower -%}
            {{ return(column.dtype | lower == 'uuid') }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(false) }}
{%- endmacro %}
