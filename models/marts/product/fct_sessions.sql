{{
    config(
        materialized='incremental',
        unique_key='session_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

with

sessions as (

    select * from {{ ref('int_events_pivoted_to_sessions') }}

),

{% if is_incremental() -%}
-- incremental: each user with a session in the lookback window, and when the first such
-- session started (docs/dbt-project.md)
users_in_window as (

    {{ users_first_session_in_window(ref('int_events_pivoted_to_sessions'), 'session_ended_at') }}

),

{% endif -%}
-- every session of those users is numbered again (a late, earlier session renumbers the
-- user's later ones); those from the start of the first in the window are written (final):
-- an earlier session keeps its number
sessions_to_number as (

    select sessions.*
    from sessions
    {% if is_incremental() -%}
    inner join users_in_window
        on sessions.user_id = users_in_window.user_id
    {% endif %}

),

orders as (

    select * from {{ ref('stg_greenery__orders') }}

),

numbered as (

    select
        *,
        row_number() over (
            partition by user_id order by session_started_at, session_id
        ) as user_session_number

    from sessions_to_number

),

final as (

    select
        ----------  ids
        numbered.session_id,
        numbered.user_id,
        numbered.order_id,
        ----------  strings
        case
            when numbered.has_checkout then 'checkout'
            when numbered.has_add_to_cart then 'add_to_cart'
            when numbered.has_page_view then 'page_view'
            else 'none'
        end as furthest_funnel_step,
        case when numbered.user_session_number = 1 then 'new' else 'returning' end as visitor_type,
        ----------  numerics
        cast(numbered.user_session_number as integer) as user_session_number,
        cast(
            {{ dbt.datediff('numbered.session_started_at', 'numbered.session_ended_at', 'second') }}
            as integer
        ) as session_duration_seconds,
        cast(numbered.events as integer) as events,
        cast(numbered.page_view_events as integer) as page_view_events,
        cast(numbered.add_to_cart_events as integer) as add_to_cart_events,
        cast(numbered.checkout_events as integer) as checkout_events,
        cast(numbered.package_shipped_events as integer) as package_shipped_events,
        cast(numbered.products_viewed as integer) as products_viewed,
        cast(numbered.products_added_to_cart as integer) as products_added_to_cart,
        cast(coalesce(orders.order_total, 0) as numeric(12, 2)) as revenue,
        ----------  booleans
        numbered.has_page_view,
        numbered.has_add_to_cart,
        numbered.has_checkout,
        numbered.has_package_shipped,
        numbered.user_session_number = 1 as is_first_session,
        ----------  timestamps
        numbered.session_started_at,
        numbered.session_ended_at,
        {{ build_started_at() }} as built_at,
        cast(numbered.session_started_at as date) as session_date

    from numbered
    left join orders
        on numbered.order_id = orders.order_id
    {% if is_incremental() -%}
    inner join users_in_window
        on numbered.user_id = users_in_window.user_id
    where numbered.session_started_at >= users_in_window.first_session_started_at
    {% endif %}

)

select * from final
