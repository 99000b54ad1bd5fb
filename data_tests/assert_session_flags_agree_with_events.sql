-- fct_sessions' funnel flags and counts say exactly what the session's events say (on an
-- incremental run, for the sessions it recomputed: macros/incremental_lookback.sql).
with

sessions as (

    select * from {{ tested_rows(ref('fct_sessions')) }}

),

events as (

    select session_events.* from {{ ref('fct_session_events') }} as session_events
    {% if test_window(ref('fct_sessions')) -%}
    inner join sessions on session_events.session_id = sessions.session_id
    {%- endif %}

),

from_events as (

    select
        session_id,
        count(*) as events,
        max(case when event_type = 'page_view' then 1 else 0 end) as has_page_view,
        max(case when event_type = 'add_to_cart' then 1 else 0 end) as has_add_to_cart,
        max(case when event_type = 'checkout' then 1 else 0 end) as has_checkout,
        max(case when event_type = 'package_shipped' then 1 else 0 end) as has_package_shipped

    from events
    group by session_id

),

disagreements as (

    select sessions.session_id

    from sessions
    left join from_events
        on sessions.session_id = from_events.session_id
    where
        from_events.session_id is null
        or sessions.events != from_events.events
        or (case when sessions.has_page_view then 1 else 0 end) != from_events.has_page_view
        or (case when sessions.has_add_to_cart then 1 else 0 end) != from_events.has_add_to_cart
        or (case when sessions.has_checkout then 1 else 0 end) != from_events.has_checkout
        or (case when sessions.has_package_shipped then 1 else 0 end) != from_events.has_package_shipped

)

select * from disagreements
