{{
    config(
        materialized='incremental',
        unique_key='product_session_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

with

events as (

    select * from {{ ref('stg_greenery__events') }}

),

sessions as (

    select * from {{ ref('fct_sessions') }}

),

order_items as (

    select * from {{ ref('stg_greenery__order_items') }}

),

-- incremental: every session of the users with an event in the lookback window (fct_sessions
-- may have renumbered them), and its events (docs/dbt-project.md). Read twice below: a full
-- build reads the sessions again for each rather than copy them all (macros/not_materialized.sql)
sessions_to_match as {{ not_materialized() }} (

    select sessions.*
    from sessions
    {{ join_touched_in_lookback(
        'sessions', 'user_id', ref('fct_sessions'),
        'session_ended_at', 'session_started_at'
    ) }}

),

events_to_match as (

    select events.*
    from events
    {{ join_touched_in_lookback(
        'events', 'user_id', ref('fct_sessions'),
        'session_ended_at', 'session_started_at'
    ) }}

),

product_events as (

    select
        session_id,
        product_id,
        max(case when event_type = 'page_view' then 1 else 0 end) as viewed,
        max(case when event_type = 'add_to_cart' then 1 else 0 end) as added_to_cart

    from events_to_match
    where product_id is not null
    group by session_id, product_id

),

-- checkout events carry no product: what a session bought is in its order's items
purchases as (

    select
        sessions.session_id,
        order_items.product_id,
        sum(order_items.quantity) as units_purchased

    from sessions_to_match as sessions
    inner join order_items
        on sessions.order_id = order_items.order_id
    group by sessions.session_id, order_items.product_id

),

session_products as (

    select
        coalesce(product_events.session_id, purchases.session_id) as session_id,
        coalesce(product_events.product_id, purchases.product_id) as product_id,
        coalesce(product_events.viewed, 0) = 1 as has_viewed,
        coalesce(product_events.added_to_cart, 0) = 1 as has_added_to_cart,
        purchases.product_id is not null as has_purchased,
        coalesce(purchases.units_purchased, 0) as units_purchased

    from product_events
    full outer join purchases
        on product_events.session_id = purchases.session_id
        and product_events.product_id = purchases.product_id

),

final as (

    select
        ----------  ids
        cast(
            {{ dbt.concat(['session_products.session_id', "'-'", 'session_products.product_id']) }}
            as {{ dbt.type_string() }}
        ) as product_session_id,
        session_products.session_id,
        session_products.product_id,
        sessions.user_id,
        sessions.order_id,
        ----------  strings
        sessions.visitor_type,
        ----------  numerics
        cast(session_products.units_purchased as integer) as units_purchased,
        ----------  booleans
        session_products.has_viewed,
        session_products.has_added_to_cart,
        session_products.has_purchased,
        ----------  timestamps
        sessions.session_started_at,
        sessions.session_date

    from session_products
    inner join sessions_to_match as sessions
        on session_products.session_id = sessions.session_id

)

select * from final
