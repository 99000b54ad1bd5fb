{#- delete+insert by session, as every session fact: an incremental run recomputes whole
    sessions (docs/dbt-project.md, "Incremental session facts") -#}
{#- read by an incremental run only (below); dbt must still build it first -#}
-- depends_on: {{ ref('int_events_pivoted_to_sessions') }}
{{
    config(
        materialized='incremental',
        unique_key='session_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

{#- the funnel events of each session and of each user, in time order: at the same instant
    the page view first (funnel step 0), then by event_id -#}
{%- set in_order = 'order by event_at, funnel_step, event_id' -%}
{%- set in_session = '(partition by session_id ' ~ in_order ~ ')' -%}
{%- set of_user = '(partition by user_id ' ~ in_order ~ ')' -%}

with

events as (

    select * from {{ ref('fct_session_events') }}

),

{% if is_incremental() -%}
-- incremental: only a session with an event in the lookback window can have changed, and an
-- event credits page views of its user up to 7 days before it: from 7 days before the first
-- such session of each user (docs/dbt-project.md)
users_in_window as (

    {{ users_first_session_in_window(ref('int_events_pivoted_to_sessions'), 'viewed_at') }}

),

-- every session of those users with an event since then is recomputed whole
recomputed_sessions as (

    select
        sessions.session_id,
        sessions.user_id,
        sessions.session_started_at

    from {{ ref('int_events_pivoted_to_sessions') }} as sessions
    inner join users_in_window
        on sessions.user_id = users_in_window.user_id
    where
        sessions.session_ended_at
        >= {{ dbt.dateadd('day', -7, 'users_in_window.first_session_started_at') }}

),

-- from the start of each user's first recomputed session: a page view's credits come from
-- the events after it
users_recomputed_from as (

    select
        user_id,
        min(session_started_at) as recomputed_from

    from recomputed_sessions
    group by user_id

),

{% endif -%}
events_to_match as (

    select events.*
    from events
    {% if is_incremental() -%}
    inner join users_recomputed_from
        on events.user_id = users_recomputed_from.user_id
    where events.event_at >= users_recomputed_from.recomputed_from
    {% endif %}

),

funnel_events as (

    select
        event_id,
        session_id,
        user_id,
        product_id,
        event_at,
        -- the event type as a number, which the windows below sort with less than its text:
        -- at the same instant the page view comes first, so a conversion at or after it counts
        case event_type when 'page_view' then 0 when 'add_to_cart' then 1 else 2 end as funnel_step

    from events_to_match
    where event_type in ('page_view', 'add_to_cart', 'checkout')

),

-- for each event: when the next page view, add to cart and checkout come after it in its
-- session. Each add to cart and checkout is credited to the latest page view at or before it,
-- so a page view is credited with one when the next one comes before the next page view (at
-- the same instant the page view comes first: never before it). The rows are in time order,
-- so the next such time is also the least of the later ones: no frame over every later row.
-- One sort per window, and no aggregate or join back to the page views
next_in_session as (

    select
        *,
        {{ next_non_null("case when funnel_step = 0 then event_at end", in_session) }}
            as next_view_in_session_at,
        {{ next_non_null("case when funnel_step = 1 then event_at end", in_session) }}
            as next_add_to_cart_in_session_at,
        {{ next_non_null("case when funnel_step = 2 then event_at end", in_session) }}
            as next_checkout_in_session_at

    from funnel_events

),

-- the same of each user, for the page views and checkouts only: an add to cart credits no
-- page view outside its session, and a window sorts 40 % fewer rows without them
next_of_user as (

    select
        *,
        {{ next_non_null("case when funnel_step = 0 then event_at end", of_user) }}
            as next_view_of_user_at,
        {{ next_non_null("case when funnel_step = 2 then event_at end", of_user) }}
            as next_checkout_of_user_at

    from next_in_session
    where funnel_step in (0, 2)

),

page_views as (

    select next_of_user.*
    from next_of_user
    {% if is_incremental() -%}
    inner join recomputed_sessions
        on next_of_user.session_id = recomputed_sessions.session_id
    {% endif %}
    where next_of_user.funnel_step = 0

),

final as (

    select
        ----------  ids
        event_id as page_view_id,
        session_id,
        user_id,
        product_id,
        ----------  booleans
        -- MetricFlow's conversion join with entity session
        coalesce(
            next_add_to_cart_in_session_at < next_view_in_session_at,
            next_add_to_cart_in_session_at is not null
        ) as is_credited_with_add_to_cart,
        coalesce(
            next_checkout_in_session_at < next_view_in_session_at,
            next_checkout_in_session_at is not null
        ) as is_credited_with_checkout,
        -- entity user, window 7 days: the checkout less than 7 days after the page view
        (
            coalesce(
                next_checkout_of_user_at < next_view_of_user_at,
                next_checkout_of_user_at is not null
            )
            and next_checkout_of_user_at < {{ dbt.dateadd('day', 7, 'event_at') }}
        ) as is_credited_with_user_checkout_7d,
        ----------  timestamps
        event_at as viewed_at,
        {{ build_started_at() }} as built_at

    from page_views

)

select * from final
