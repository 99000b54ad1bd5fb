{#- The current time as a naive timestamp, the type of every time column here (UTC). -#}
{% macro now_timestamp() -%}
    cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{#-
    Where an incremental run of the session facts starts looking again.

    `incremental_lookback_days` (default 3, fractions allowed) before the latest `column`
    already in the target ({{ this }}, or `relation`) that is not in the future: events that
    arrive late, but no later than that, are still picked up, and an event dated a century
    ahead (kept as an anomaly) cannot move the window. Everything before it is assumed
    final. An empty target starts at the beginning. docs/dbt-project.md ("Incremental
    session facts") explains the whole strategy.
-#}
{% macro incremental_cutoff(column, relation=none) -%}
    {%- set hours = (var('incremental_lookback_days', 3) | float * 24) | round | int -%}
    {%- set latest = '(select max(' ~ column ~ ') from ' ~ (relation or this) ~ ' where ' ~ column ~ ' <= ' ~ now_timestamp() ~ ')' -%}
    coalesce(
        {{ dbt.dateadd('hour', -hours, latest) }},
        cast('1900-01-01' as timestamp)
    )
{%- endmacro %}

{#-
    On an incremental run, keep only the rows whose `key` (a session, a user) has a row of
    `source` in the lookback window: those keys are recomputed whole. On a full build, nothing.
    `time_column` is the source's time; `target_column` the target's, for the cutoff.
    Placed after `from <rows>` (select `<rows>.*`): an inner join to the distinct keys. Not
    `key in (select …)`: DuckDB cannot estimate the window's rows and builds its semi join's
    hash table from the large side (fct_page_views' daily select at scale 10000: 30 s instead
    of a few). `source` is a relation (`ref(...)`), not the model's import CTE: DuckDB
    materializes a CTE that a query reads twice.
-#}
{% macro join_touched_in_lookback(rows, key, source, time_column, target_column) -%}
    {%- if is_incremental() -%}
    {{ join_touched(rows, key, source, time_column ~ ' >= ' ~ incremental_cutoff(target_column)) }}
    {%- endif -%}
{%- endmacro %}

{#-
    `rows` joined (`kind`: inner, or left) to the distinct `key`s of the rows of `source`
    where `condition` holds, as `touched`.
-#}
{% macro join_touched(rows, key, source, condition, kind='inner') -%}
    {{ kind }} join (
        select distinct {{ key }}
        from {{ source }}
        where {{ condition }}
    ) as touched on {{ rows }}.{{ key }} = touched.{{ key }}
{%- endmacro %}

{#-
    The data tests of an incremental run look at what the run recomputed, not at every row.

    `incremental_test_windows` (dbt_project.yml) names, per incremental model (and the raw
    events, which only grow), the key its incremental run recomputes whole and the time column
    of its lookback window. Unless the run is a --full-refresh, a test on such a relation reads
    only the rows whose key has a row in the window or a row with no time, and every row
    without a key (a not_null test on the key must still see them): that is the scan a daily
    run saves, and delete+insert on the unique key keeps the untouched rows as they were when
    tested. A full refresh (every `greenery build` after a new raw load) tests every row.
    Returns the join and its condition, or none.
-#}
{% macro test_window(relation) -%}
    {%- set windows = {} if flags.FULL_REFRESH else var('incremental_test_windows', {}) -%}
    {%- set window = windows.get(relation.identifier | lower) -%}
    {%- if window -%}
        {%- set key, time = window['key'], window['time'] -%}
        {%- set in_window = time ~ ' is null or ' ~ time ~ ' >= ' ~ incremental_cutoff(time, relation) -%}
        {%- do return({
            'join': join_touched('tested', key, relation, in_window, kind='left'),
            'condition': '(touched.' ~ key ~ ' is not null or tested.' ~ key ~ ' is null)',
        }) -%}
    {%- endif -%}
    {%- do return(none) -%}
{%- endmacro %}

{#-
    What a test reads of `relation`: all of it, or, with a `where` or a test window
    (test_window), a subquery of the rows that pass both.
-#}
{% macro tested_rows(relation, where='') -%}
    {%- set window = test_window(relation) -%}
    {%- if where or window -%}
        {%- set conditions = ([window['condition']] if window else []) + (['(' ~ where ~ ')'] if where else []) -%}
        {%- set filtered = 'select tested.* from ' ~ relation ~ ' as tested ' ~ (window['join'] if window else '') ~ ' where ' ~ conditions | join(' and ') -%}
        {%- do return('(' ~ filtered ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{#- dbt's own get_where_subquery (what a generic test reads as `model`), plus test_window. -#}
{% macro get_where_subquery(relation) -%}
    {%- do return(tested_rows(relation, config.get('where', ''))) -%}
{%- endmacro %}
