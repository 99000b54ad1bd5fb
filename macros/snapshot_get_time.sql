{#-
    The time a snapshot records.
    1. `--vars '{snapshot_at: "2021-02-19 00:00:00"}'` pins it (backfills, the Snowflake emulation);
    2. else the replay clock: `greenery replay` writes each week's products together with that
       week's time into raw.replay.clock, so any snapshot of those products (`greenery build`
       or a plain `dbt build` after a replay) records the replayed week, not today;
    3. else the current time, exactly as dbt's own macros do it (UTC, without time zone).
    Production has no replay clock (raw.replay does not exist there), so it snapshots "now".
-#}
{% macro replay_clock() -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set clock = adapter.get_relation(database='raw', schema='replay', identifier='clock') -%}
    {%- if clock is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set recorded = run_query('select max(recorded_at) from ' ~ clock).columns[0].values()[0] -%}
    {{ return(recorded | string if recorded is not none else none) }}
{%- endmacro %}

{% macro pinned_snapshot_time() -%}
    {{ return(var('snapshot_at') or replay_clock()) }}
{%- endmacro %}

{% macro duckdb__snapshot_get_time() -%}
    {%- set pinned = pinned_snapshot_time() -%}
    {%- if pinned -%}
        {{ snapshot_string_as_time(pinned) }}
    {%- else -%}
        {{ current_timestamp() }}::timestamp
    {%- endif -%}
{%- endmacro %}

{% macro snowflake__snapshot_get_time() -%}
    {%- set pinned = pinned_snapshot_time() -%}
    {%- if pinned -%}
        {{ snapshot_string_as_time(pinned) }}
    {%- else -%}
        to_timestamp_ntz({{ current_timestamp() }})
    {%- endif -%}
{%- endmacro %}
