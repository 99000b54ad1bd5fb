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

{% if is_incremental() %}
-- incremental: the sessions with an event in the lookback window (docs/dbt-project.md)
touched_sessions as (

    select distinct session_id
    from events
    where event_at >= {{ incremental_cutoff('event_at') }}

),
{% endif %}

-- every event of those sessions: position_in_session numbers the whole session
events_to_sequence as (

    select events.*
    from events
    {% if is_incremental() %}
    inner join touched_sessions
        on events.session_id = touched_sessions.session_id
    {% endif %}

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
