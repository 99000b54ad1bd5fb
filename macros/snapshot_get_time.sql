{#-
    The time a snapshot records. `--vars '{snapshot_at: "2021-02-19 00:00:00"}'` pins it, so a
    replay or backfill writes the history it would have written that day; otherwise it is
    the current time, exactly as dbt's own macros do it (UTC, without time zone).
-#}
{% macro duckdb__snapshot_get_time() -%}
    {%- if var('snapshot_at') -%}
        {{ snapshot_string_as_time(var('snapshot_at')) }}
    {%- else -%}
        {{ current_timestamp() }}::timestamp
    {%- endif -%}
{%- endmacro %}

{% macro snowflake__snapshot_get_time() -%}
    {%- if var('snapshot_at') -%}
        {{ snapshot_string_as_time(var('snapshot_at')) }}
    {%- else -%}
        to_timestamp_ntz({{ current_timestamp() }})
    {%- endif -%}
{%- endmacro %}
