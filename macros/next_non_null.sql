{#-
    `expression`'s next value that is not null, in the rows after the current one in the
    window `over` (partition and order): `lead … ignore nulls`, which DuckDB writes with the
    option inside the call and Snowflake after it.
-#}
{% macro next_non_null(expression, over) -%}
    {%- if target.type == 'duckdb' -%}
        lead({{ expression }} ignore nulls) over {{ over }}
    {%- else -%}
        lead({{ expression }}) ignore nulls over {{ over }}
    {%- endif -%}
{%- endmacro %}
