with

events as (

    select * from {{ ref('stg_greenery__events') }}

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

    from events

)

select * from sequenced
