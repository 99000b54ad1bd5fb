{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

with

events as (

    select * from {{ ref('stg_greenery__events') }}

),

-- incremental: every event of the sessions with an event in the lookback window, as
-- position_in_session numbers the whole session (docs/dbt-project.md)
events_to_sequence as (

    select events.*
    from events
    {{ join_touched_in_lookback(
        'events', 'session_id', ref('stg_greenery__events'),
        'event_at', 'event_at'
    ) }}

),

sequenced as (

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
        cast(row_number() over (
            partition by session_id order by event_at, event_id
        ) as integer) as position_in_session,
        ----------  timestamps
        event_at,
        cast(event_at as date) as event_date

    from events_to_sequence

)

select * from sequenced
