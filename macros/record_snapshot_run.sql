{#-
    A log of snapshot runs (snapshots.snapshot_runs: snapshot_name, snapshot_at).
    A check snapshot writes rows only when something changed, so without this log the last
    time we looked at the source would be lost, and the daily inventory history would stop
    at the last change instead of the last snapshot. The products snapshot calls it in its
    post-hook, so models built after it in the same run see the new entry.
-#}
{% macro snapshot_runs_relation(snapshot_relation) %}
    {{ return(snapshot_relation.incorporate(path={"identifier": "snapshot_runs"})) }}
{% endmacro %}

{% macro record_snapshot_run() %}
    {%- if execute -%}
        {%- set log = snapshot_runs_relation(this) -%}
        {%- do run_query(
            "create table if not exists " ~ log ~ " (snapshot_name " ~ dbt.type_string()
            ~ ", snapshot_at " ~ dbt.type_timestamp() ~ ")"
        ) -%}
        insert into {{ log }} (snapshot_name, snapshot_at)
        select '{{ this.identifier }}', {{ snapshot_get_time() }}
    {%- endif -%}
{% endmacro %}
