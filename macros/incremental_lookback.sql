{#-
    Where an incremental run of the session facts starts looking again.

    `incremental_lookback_days` (default 3, fractions allowed) before the latest `column`
    already in the target ({{ this }}): events that arrive late, but no later than that, are
    still picked up. Everything before it is assumed final. An empty target starts at the
    beginning. docs/dbt-project.md ("Incremental session facts") explains the whole strategy.
-#}
{% macro incremental_cutoff(column) -%}
    {%- set hours = (var('incremental_lookback_days', 3) | float * 24) | round | int -%}
    coalesce(
        {{ dbt.dateadd('hour', -hours, '(select max(' ~ column ~ ') from ' ~ this ~ ')') }},
        cast('1900-01-01' as timestamp)
    )
{%- endmacro %}
