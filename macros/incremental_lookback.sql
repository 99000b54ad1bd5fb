{#-
    Where an incremental run of the session facts starts looking again.

    `incremental_lookback_days` (default 3, fractions allowed) before the latest `column`
    already in the target ({{ this }}, or `relation`): events that arrive late, but no later than that, are
    still picked up. Everything before it is assumed final. An empty target starts at the
    beginning. docs/dbt-project.md ("Incremental session facts") explains the whole strategy.
-#}
{% macro incremental_cutoff(column, relation=none) -%}
    {%- set hours = (var('incremental_lookback_days', 3) | float * 24) | round | int -%}
    coalesce(
        {{ dbt.dateadd('hour', -hours, '(select max(' ~ column ~ ') from ' ~ (relation or this) ~ ')') }},
        cast('1900-01-01' as timestamp)
    )
{%- endmacro %}

{#-
    On an incremental run, keep only the rows whose `key` (a session, a user) has a row of
    `source` in the lookback window: those keys are recomputed whole. On a full build, nothing.
    `time_column` is the source's time; `target_column` the target's, for the cutoff.
    `source` is a relation (`ref(...)`), not the model's import CTE: DuckDB materializes a CTE
    that a query reads twice, every column of every row (29 s instead of 1.4 s for
    fct_session_events' daily run at scale 10000).
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

{#-
    The data tests of an incremental run look at what the run recomputed, not at every row.

    `incremental_test_windows` (dbt_project.yml) names, per incremental model, the key its
    incremental run recomputes whole and the time column of its lookback window. Unless the
    run is a --full-refresh, a test on such a model reads only the rows whose key has a row in
    the window (`where` below; '' otherwise): that is the scan a daily run saves, and
    delete+insert on the unique key keeps the untouched rows as they were when tested.
    A full refresh (every `greenery build` after a new raw load) tests every row.
-#}
{% macro test_window_filter(relation) -%}
    {%- set windows = {} if flags.FULL_REFRESH else var('incremental_test_windows', {}) -%}
    {%- set window = windows.get(relation.identifier | lower) -%}
    {%- if window -%}
    {{ window['key'] }} in (
        select {{ window['key'] }}
        from {{ relation }}
        where {{ window['time'] }} >= {{ incremental_cutoff(window['time'], relation) }}
    )
    {%- endif -%}
{%- endmacro %}

{#- dbt's own get_where_subquery (what a generic test reads as `model`), plus test_window_filter. -#}
{% macro get_where_subquery(relation) -%}
    {%- set filters = [config.get('where', ''), test_window_filter(relation) | trim] | select | list -%}
    {%- if filters -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ filters | join(' and ') ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
