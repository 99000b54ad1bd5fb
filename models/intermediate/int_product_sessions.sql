{#- The product sessions without their key: fct_product_sessions is a view of this table
    that adds it. Delete+insert by session, as every session fact: an incremental run
    recomputes whole sessions (docs/dbt-project.md, "Incremental session facts") -#}
{{
    config(
        materialized='incremental',
        unique_key='session_id',
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

{% if is_incremental() -%}
-- incremental: the sessions of each user with an event in the lookback window, from the start
-- of the first such session (those fct_sessions wrote again: it may have renumbered them),
-- and their events (docs/dbt-project.md)
users_in_window as (

    {{ users_first_session_in_window(ref('fct_sessions'), 'session_started_at') }}

),

{% endif -%}
-- read twice below: a full build reads the sessions again for each rather than copy them all
-- (macros/not_materialized.sql)
sessions_to_match as {{ not_materialized() }} (

    select sessions.*
    from sessions
    {% if is_incremental() -%}
    inner join users_in_window
        on sessions.user_id = users_in_window.user_id
    where sessions.session_started_at >= users_in_window.first_session_started_at
    {% endif %}

),

events_to_match as (

    select events.*
    from events
    {% if is_incremental() -%}
    inner join users_in_window
        on events.user_id = users_in_window.user_id
    where events.event_at >= users_in_window.first_session_started_at
    {% endif %}

),

-- each product event, and each product bought (checkout events carry no product: what a
-- session bought is in its order's items), one row each; grouped per (session, product) below.
-- Not a full outer join of the two sides, each grouped: at scale 10000 that held both sides'
-- hash tables and the sessions' at once and ran out of DuckDB's 3 GB (with a 6 GB limit: 29 s,
-- 6.2 GiB resident); this took 40 s within 3 GB (with the key, then stored), with the same
-- rows
product_rows as (

    select
        session_id,
        product_id,
        case when event_type = 'page_view' then 1 else 0 end as viewed,
        case when event_type = 'add_to_cart' then 1 else 0 end as added_to_cart,
        0 as purchased,
        0 as units

    from events_to_match
    where product_id is not null

    union all

    select
        sessions.session_id,
        order_items.product_id,
        0 as viewed,
        0 as added_to_cart,
        1 as purchased,
        order_items.quantity as units

    from sessions_to_match as sessions
    inner join order_items
        on sessions.order_id = order_items.order_id

),

session_products as (

    select
        session_id,
        product_id,
        max(viewed) = 1 as has_viewed,
        max(added_to_cart) = 1 as has_added_to_cart,
        max(purchased) = 1 as has_purchased,
        sum(units) as units_purchased

    from product_rows
    group by session_id, product_id

),

final as (

    select
        ----------  ids
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
        {{ build_started_at() }} as built_at,
        sessions.session_date

    from session_products
    inner join sessions_to_match as sessions
        on session_products.session_id = sessions.session_id

)

select * from final
