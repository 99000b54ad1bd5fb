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

{#- `rows` joined to the distinct `key`s of the rows of `source` where `condition` holds. -#}
{% macro join_touched(rows, key, source, condition) -%}
    inner join (
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
    tested. The window ends at the latest time not in the future (an event dated a century
    ahead must not move it). A full refresh (every `greenery build` after a new raw load)
    tests every row. Returns the join and its condition, or none.
-#}
{% macro test_window(relation) -%}
    {%- set windows = {} if flags.FULL_REFRESH else var('incremental_test_windows', {}) -%}
    {%- set window = windows.get(relation.identifier | lower) -%}
    {%- if window -%}
        {%- set key = window['key'] -%}
        {%- set time = 'cast(' ~ window['time'] ~ ' as ' ~ dbt.type_timestamp() ~ ')' -%}
        {%- set now = 'cast(' ~ dbt.current_timestamp() ~ ' as ' ~ dbt.type_timestamp() ~ ')' -%}
        {%- set times = '(select ' ~ time ~ ' as window_time from ' ~ relation ~ ' where ' ~ time ~ ' <= ' ~ now ~ ') as window_times' -%}
        {%- set in_window = time ~ ' is null or ' ~ time ~ ' >= ' ~ incremental_cutoff('window_time', times) -%}
        {%- set join = 'left join (select distinct ' ~ key ~ ' from ' ~ relation ~ ' where ' ~ in_window ~ ') as touched on tested.' ~ key ~ ' = touched.' ~ key -%}
        {%- do return({'join': join, 'condition': '(touched.' ~ key ~ ' is not null or tested.' ~ key ~ ' is null)'}) -%}
    {%- endif -%}
    {%- do return(none) -%}
{%- endmacro %}

{#- dbt's own get_where_subquery (what a generic test reads as `model`), plus test_window. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set window = test_window(relation) -%}
    {%- if where or window -%}
        {%- set conditions = ([window['condition']] if window else []) + (['(' ~ where ~ ')'] if where else []) -%}
        {%- set filtered = 'select tested.* from ' ~ relation ~ ' as tested ' ~ (window['join'] if window else '') ~ ' where ' ~ conditions | join(' and ') -%}
        {%- do return('(' ~ filtered ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
