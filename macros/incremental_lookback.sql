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
    {{ lookback_start(latest_time(column, relation or this)) }}
{%- endmacro %}

{#- The latest `column` of `relation` that is not in the future, as a scalar subquery. -#}
{% macro latest_time(column, relation) -%}
    (select max({{ column }}) from {{ relation }} where {{ column }} <= {{ now_timestamp() }})
{%- endmacro %}

{#- `incremental_lookback_days` before `latest` (a timestamp expression); with no latest, the
    beginning. -#}
{% macro lookback_start(latest) -%}
    {%- set hours = (var('incremental_lookback_days', 3) | float * 24) | round | int -%}
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
    Each user with a session in the lookback window (a row of `sessions`, a relation of
    sessions with user_id, session_started_at and session_ended_at, that ends in it) and when
    the first such session started: a late session changes what the models compute over the
    user's later sessions, never over the earlier ones. `target_column` is the model's time
    column, for the cutoff. A select, for a CTE of an incremental run.
-#}
{% macro users_first_session_in_window(sessions, target_column) -%}
    select
        user_id,
        min(session_started_at) as first_session_started_at
    from {{ sessions }}
    where session_ended_at >= {{ incremental_cutoff(target_column) }}
    group by user_id
{%- endmacro %}

{#-
    On an incremental run, keep only the rows whose `key` (the model's unique key, e.g. a user)
    has a row the table ({{ this }}) does not hold as it is now: a new row, a row changed in
    place, or a row gone or moved to another key. For sources that change rows in place with
    no update time (raw orders): each row of `rows` is matched to the table's by `row_key`, and
    the two compared by a hash of every column of the table but `except_columns` (those the
    model computes over the recomputed keys afterwards). `hash(…)` is DuckDB's and Snowflake's
    64-bit hash: a change is missed only if both rows hash alike, and the join carries three
    columns instead of every one. Both sides' keys are touched: a row that moved leaves its
    old key to be recomputed too. On a full build, nothing.
-#}
{% macro join_touched_by_changes(rows, key, row_key, except_columns=[]) -%}
    {%- if is_incremental() -%}
    {%- set skipped = except_columns | map('lower') | list -%}
    {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | reject('in', skipped) | list -%}
    {%- set compared = 'select ' ~ row_key ~ ', ' ~ key ~ ', hash(' ~ columns | join(', ') ~ ') as fingerprint from ' -%}
    {%- set changed_keys -%}
        (
            with changed as (
                select
                    now_row.{{ key }} as key_now,
                    built.{{ key }} as key_built
                from ({{ compared ~ rows }}) as now_row
                full outer join ({{ compared ~ this }}) as built
                    on now_row.{{ row_key }} = built.{{ row_key }}
                where now_row.fingerprint is distinct from built.fingerprint
            )
            select key_now as {{ key }} from changed
            union all
            select key_built as {{ key }} from changed
        ) as changed_keys
    {%- endset -%}
    {{ join_touched(rows, key, changed_keys, key ~ ' is not null') }}
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
    When the build that writes a row started (UTC), as the `built_at` of every row an
    incremental model (or a view of one) writes: the rows one run wrote share it, and the
    data tests of that run read only them (test_window).
-#}
{% macro build_started_at() -%}
    {{ timestamp_literal(run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f")) }}
{%- endmacro %}

{#- A timestamp constant from its text (YYYY-MM-DD HH:MM:SS[.ffffff]). -#}
{% macro timestamp_literal(text) -%}
    cast('{{ text }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{#-
    The data tests of an incremental run look at what the run wrote, not at every row.

    A model (named as its relation) that documents a `built_at` column (build_started_at):
    unless the run is a --full-refresh, a test on it reads the rows the last build wrote,
    those with its latest `built_at` (last_built_at). delete+insert on the unique key wrote
    every row of each key the run recomputed, and left the others as they were when they
    were tested. The run appended its rows after the older ones, so DuckDB's zone maps and
    Snowflake's micro-partition pruning skip those. After a full build every row has the
    same `built_at`: a test reads them all.

    The raw events, orders, order items and users, and their staging views, only grow
    between full loads (`incremental_test_windows`, dbt_project.yml, names each one's key and
    time). A test on one reads the rows whose key has a row in the lookback window (or a row
    with no time), and every row without a key (a not_null test on the key must still see
    them). A relation without a time of its own (order items) names, as `from`, the relation
    beside it whose rows have the key and the time (their orders); dbt does not know the test
    reads it, so while it does not exist (a first build may test the items before it) the
    test reads every row. The window ends at the latest time each relation held when the last
    build ended (record_test_windows), where that build's incremental models looked back
    from; until a build has recorded it, the test reads every row.
    With the variable `test_windows` false, every test reads every row, as on a --full-refresh.
    Returns the join and its condition, or none (also while dbt parses).
-#}
{% macro test_window(relation) -%}
    {%- if flags.FULL_REFRESH or not execute or not var('test_windows', true) -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set model = graph.nodes.get('model.' ~ project_name ~ '.' ~ relation.identifier | lower) -%}
    {%- if model and 'built_at' in model.columns -%}
        {%- do return({'join': '', 'condition': 'tested.built_at = ' ~ last_built_at(model, relation)}) -%}
    {%- endif -%}
    {%- set window = var('incremental_test_windows', {}).get(relation.identifier | lower) -%}
    {%- set timed = relation -%}
    {%- if window and 'from' in window -%}
        {%- set timed = adapter.get_relation(relation.database, relation.schema, window['from']) -%}
    {%- endif -%}
    {%- if window and timed is not none -%}
        {%- set recorded = load_relation(meta_relation('test_windows')) -%}
        {%- if recorded is not none -%}
            {%- set key, time = window['key'], window['time'] -%}
            {%- set latest = '(select latest from ' ~ recorded ~ " where relation_name = '"
                ~ timed.identifier | lower ~ "' and time_column = '" ~ time ~ "')" -%}
            {%- set in_window = time ~ ' is null or ' ~ time ~ ' >= ' ~ lookback_start(latest) -%}
            {%- do return({
                'join': join_touched('tested', key, timed, in_window, kind='left'),
                'condition': '(touched.' ~ key ~ ' is not null or tested.' ~ key ~ ' is null)',
            }) -%}
        {%- endif -%}
    {%- endif -%}
    {%- do return(none) -%}
{%- endmacro %}

{#-
    The `built_at` of the rows `model` (at `relation`) last wrote, as a constant, which DuckDB
    pushes into the table scan (compared with a subquery, it may join every row first): this
    run's start when this `dbt build` builds the table that stamps them (built_at_writer),
    else the latest in the relation. While the relation does not exist (a `dbt compile` of a
    new warehouse), the subquery that finds it.
-#}
{% macro last_built_at(model, relation) -%}
    {%- if flags.WHICH == 'build' and built_at_writer(model).unique_id in selected_resources -%}
        {%- do return(build_started_at()) -%}
    {%- endif -%}
    {%- set latest = '(select max(built_at) from ' ~ relation ~ ')' -%}
    {%- if load_relation(relation) is none -%}
        {%- do return(latest) -%}
    {%- endif -%}
    {%- set value = run_query('select ' ~ latest).columns[0].values()[0] -%}
    {%- do return(timestamp_literal(value) if value else 'null') -%}
{%- endmacro %}

{#-
    The model whose build stamps the `built_at` that `model` holds: the model itself, or, for a
    view, the model the view takes it from (fct_session_events: stg_greenery__event_rows). A
    `dbt build` of the view alone writes no row of it.
-#}
{% macro built_at_writer(model) -%}
    {%- if model.config.materialized == 'view' -%}
        {%- for parent_id in model.depends_on.nodes -%}
            {%- set parent = graph.nodes.get(parent_id) -%}
            {%- if parent and parent.resource_type == 'model' and 'built_at' in parent.columns -%}
                {%- do return(built_at_writer(parent)) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- do return(model) -%}
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

{#-
    At the end of a build (or run), the latest time (not in the future) of every relation a
    test window reads (incremental_test_windows: each window's relation, or its `from`), in
    greenery_meta.test_windows. The next build's models look back from the same times (each
    from its own table), and its tests (test_window) read the rows those models read.
-#}
{% macro record_test_windows() %}
    {%- if execute and flags.WHICH in ("build", "run") -%}
        {#- each (relation, time column) once: the order items' window is their orders' -#}
        {%- set timed = {} -%}
        {%- for name, window in var('incremental_test_windows', {}).items() -%}
            {%- do timed.update({(window.get('from', name), window['time']): none}) -%}
        {%- endfor -%}
        {%- set nodes = {} -%}
        {%- for node in graph.nodes.values() if node.resource_type == 'model' -%}
            {%- do nodes.update({node.alias: node}) -%}
        {%- endfor -%}
        {%- for node in graph.sources.values() -%}
            {%- do nodes.update({node.identifier: node}) -%}
        {%- endfor -%}
        {%- set latest = [] -%}
        {%- for name, time in timed -%}
            {%- set node = nodes.get(name) -%}
            {%- set relation = adapter.get_relation(node.database, node.schema, name) if node else none -%}
            {%- if relation is not none -%}
                {%- do latest.append(
                    "select '" ~ name ~ "' as relation_name, '" ~ time ~ "' as time_column, "
                    ~ 'cast(' ~ latest_time(time, relation) ~ ' as ' ~ dbt.type_timestamp() ~ ') as latest'
                ) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if latest -%}
            {%- set relation = meta_relation('test_windows') -%}
            {%- do adapter.create_schema(relation) -%}
            create or replace table {{ relation }} as
            {{ latest | join('\nunion all\n') }}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}
