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

{#-
    On an incremental run, keep only the rows whose `key` (a session, a user) has a row of
    `source` in the lookback window: those keys are recomputed whole. On a full build, nothing.
    `time_column` is the source's time; `target_column` the target's, for the cutoff.
-#}
{% macro where_touched_in_lookback(key, source, time_column, target_column) -%}
    {%- if is_incremental() -%}
    where {{ key }} in (
        select {{ key }}
        from {{ source }} as in_lookback
        where {{ time_column }} >= {{ incremental_cutoff(target_column) }}
    )
    {%- endif -%}
{%- endmacro %}
