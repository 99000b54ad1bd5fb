{{
    config(
        materialized='incremental',
        unique_key='page_view_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

with

events as (

    select * from {{ ref('fct_session_events') }}

),

-- incremental: every event of the users with an event in the lookback window: a late checkout
-- credits a page view up to 7 days before it, in any of the user's sessions (docs/dbt-project.md)
events_to_match as (

    select events.*
    from events
    {{ join_touched_in_lookback(
        'events', 'user_id', ref('fct_session_events'),
        'event_at', 'viewed_at'
    ) }}

),

funnel_events as (

    select
        event_id,
        session_id,
        user_id,
        product_id,
        event_type,
        position_in_session,
        event_at,
        -- at the same instant the page view comes first: a conversion at or after it counts
        case when event_type = 'page_view' then 0 else 1 end as same_instant_order

    from events_to_match
    where event_type in ('page_view', 'add_to_cart', 'checkout')

),

-- for each event: the latest page view at or before it, in its session (a page view's
-- position_in_session, event time then event_id, tells it apart) and of its user (the user's
-- page views counted in time order: a page view's own number, for any other event the number
-- of the latest one before it; one window ordered like the session's, no second sort)
latest_view as (

    select
        *,
        max(case when event_type = 'page_view' then position_in_session end) over (
            partition by session_id order by event_at, same_instant_order, event_id
            rows between unbounded preceding and current row
        ) as latest_view_in_session,
        sum(case when event_type = 'page_view' then 1 else 0 end) over (
            partition by user_id order by event_at, same_instant_order, event_id
            rows between unbounded preceding and current row
        ) as latest_view_of_user,
        max(case when event_type = 'page_view' then event_at end) over (
            partition by user_id order by event_at, same_instant_order, event_id
            rows between unbounded preceding and current row
        ) as latest_viewed_at_by_user

    from funnel_events

),

-- the page view each add to cart and checkout is credited to: the latest one before it in
-- its session (MetricFlow's conversion join with entity session)
session_credits as (

    select
        session_id,
        latest_view_in_session as view_in_session,
        max(case when event_type = 'add_to_cart' then 1 else 0 end) as credits_add_to_cart,
        max(case when event_type = 'checkout' then 1 else 0 end) as credits_checkout

    from latest_view
    where
        event_type in ('add_to_cart', 'checkout')
        and latest_view_in_session is not null
    group by session_id, latest_view_in_session

),

-- the page view each checkout is credited to at user level: the user's latest one before it,
-- if less than 7 days before it (entity user, window 7 days)
user_credits as (

    select distinct
        user_id,
        latest_view_of_user as view_of_user

    from latest_view
    where
        event_type = 'checkout'
        and latest_viewed_at_by_user > {{ dbt.dateadd('day', -7, 'event_at') }}

),

final as (

    select
        ----------  ids
        latest_view.event_id as page_view_id,
        latest_view.session_id,
        latest_view.user_id,
        latest_view.product_id,
        ----------  booleans
        coalesce(session_credits.credits_add_to_cart = 1, false) as is_credited_with_add_to_cart,
        coalesce(session_credits.credits_checkout = 1, false) as is_credited_with_checkout,
        user_credits.user_id is not null as is_credited_with_user_checkout_7d,
        ----------  timestamps
        latest_view.event_at as viewed_at

    from latest_view
    left join session_credits
        on latest_view.session_id = session_credits.session_id
        and latest_view.latest_view_in_session = session_credits.view_in_session
    left join user_credits
        on latest_view.user_id = user_credits.user_id
        and latest_view.latest_view_of_user = user_credits.view_of_user
    -- a page view's latest view is itself
    where latest_view.event_type = 'page_view'

)

select * from final
