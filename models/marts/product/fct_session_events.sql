{#-
    A view: every column is stg_greenery__event_rows' (through stg_greenery__events), computed
    when its session was. A copy of the 36.7 M rows at scale 10000 cost a full build 53 s and
    added nothing. On Snowflake the rows it reads are clustered by event_date (dbt_project.yml).
-#}
{{ config(materialized='view') }}

with

events as (

    select * from {{ ref('stg_greenery__events') }}

),

final as (

    select
        ----------  ids
        event_id,
        session_id,
        user_id,
        product_id,
        order_id,
        ----------  strings
        event_type,
        page_type,
        page_url,
        ----------  numerics
        position_in_session,
        ----------  timestamps
        event_at,
        built_at,
        event_date

    from events

)

select * from final
