{%- set event_types = ['page_view', 'add_to_cart', 'checkout', 'package_shipped'] -%}

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

-- incremental: every event of the sessions with an event in the lookback window, so each
-- is pivoted whole (docs/dbt-project.md)
events_to_pivot as (

    select events.*
    from events
    {{ join_touched_in_lookback(
        'events', 'session_id', ref('stg_greenery__events'),
        'event_at', 'session_ended_at'
    ) }}

),

pivoted as (

    select
        session_id,
        -- a session belongs to one user
        min(user_id) as user_id,
        count(distinct user_id) as users_in_session,
        -- a checkout session places one order
        max(case when event_type = 'checkout' then order_id end) as order_id,
        min(event_at) as session_started_at,
        max(event_at) as session_ended_at,
        count(*) as events,
        {% for event_type in event_types %}
        sum(case when event_type = '{{ event_type }}' then 1 else 0 end) as {{ event_type }}_events,
        {% endfor %}
        count(distinct case when event_type = 'page_view' then product_id end) as products_viewed,
        count(distinct case when event_type = 'add_to_cart' then product_id end) as products_added_to_cart

    from events_to_pivot
    group by session_id

),

flagged as (

    select
        *,
        {% for event_type in event_types %}
        {{ event_type }}_events > 0 as has_{{ event_type }}{% if not loop.last %},{% endif %}
        {% endfor %}

    from pivoted

)

select * from flagged
