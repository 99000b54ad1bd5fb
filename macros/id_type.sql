{#-
    The type of every uuid id (events, sessions, users, addresses, orders, products): DuckDB's
    16-byte `uuid` on DuckDB, text elsewhere (Snowflake has no uuid type). At 36.7 M events,
    sorting, hashing and writing 36-character text ids was most of what the event-grained
    models cost; as uuids the full build took half as long (docs/dbt-project.md, "Ids"). The
    raw catalog already stores them as `uuid` on DuckDB (the cast costs nothing there); an id
    that is not a uuid is refused by `greenery load`, naming file, column and line. A client of
    the semantic layer reads a uuid as its lowercase, hyphenated text (Arrow).
-#}
{% macro id_type() -%}
    {{ 'uuid' if target.type == 'duckdb' else dbt.type_string() }}
{%- endmacro %}
