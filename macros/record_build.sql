{#-
    The id of the last dbt invocation that could change the warehouse's data
    (greenery_meta.build: build_id, built_at), written at the end of every build, run, seed
    and snapshot, failed or not. Saved-query exports record the id they were computed from;
    the server answers from an export table only while the two match
    (greenery.semantic.declarative), so a rebuild without new exports never serves old rows.
-#}
{% macro record_build() %}
    {%- if execute and flags.WHICH in ("build", "run", "seed", "snapshot") -%}
        {%- set relation = meta_relation("build") -%}
        {%- do adapter.create_schema(relation) -%}
        create or replace table {{ relation }} as
        select
            cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as build_id,
            {{ dbt.current_timestamp() }} as built_at
    {%- endif -%}
{% endmacro %}

{#- A table of the project's own bookkeeping, in the schema greenery_meta. -#}
{% macro meta_relation(identifier) -%}
    {%- do return(api.Relation.create(database=target.database, schema="greenery_meta", identifier=identifier)) -%}
{%- endmacro %}
