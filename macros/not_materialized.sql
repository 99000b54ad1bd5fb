{#-
    `with name as {{ not_materialized() }} (…)`: DuckDB materializes a CTE that a query reads
    more than once, a full copy of its rows; this hint makes each reader re-read its source
    instead. For a CTE that only renames and filters a table, re-reading is much cheaper:
    stg_greenery__event_rows at 36.7 M events took 125 s with its import CTEs copied, 79 s
    without (with the hashed duplicate check). Only on a full build: an incremental run's CTE
    holds the few days of its lookback window, which are cheaper to copy once than to find
    again for each reader. Snowflake has no such hint and needs none: its planner inlines
    CTEs itself.
-#}
{% macro not_materialized() -%}
    {%- if target.type == 'duckdb' and not is_incremental() %}not materialized{% endif -%}
{%- endmacro %}
