{#- one row per anomaly kind: (kind, the table it is found in, the policy applied) -#}
{%- set kinds = [
    ('duplicate_events', 'events',
        'a row delivered twice (same event_id): kept once, the copies dropped in staging'),
    ('events_without_timestamp', 'events',
        'no created_at: excluded (an event without a time belongs to no session step)'),
    ('events_in_future', 'events',
        'created_at after the build time: excluded (a wrong clock, not an event yet)'),
    ('unknown_event_types', 'events',
        'an event_type outside page_view, add_to_cart, checkout, package_shipped: excluded from the funnel'),
    ('late_events', 'events',
        'more than a day after its session started: kept, in its session (it happened there)'),
    ('orphan_product_events', 'events',
        'a product_id the snapshot has never seen: excluded (no product to attribute it to)'),
    ('orphan_user_events', 'events',
        'a user_id not in users: excluded (no user to attribute it to)'),
    ('sessions_with_two_users', 'events',
        'a session whose events name two users: attributed to the user of its first event'),
    ('orders_without_items', 'orders',
        'an order with no order_items: kept in fct_orders, flagged has_items = false, no buyer in dim_users'),
    ('delisted_products', 'products',
        'a product gone from the catalog: kept in dim_products, flagged is_delisted, its history kept'),
] -%}

with

event_rows as (

    select * from {{ ref('stg_greenery__event_rows') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

products as (

    select * from {{ ref('dim_products') }}

),

kinds as (

    {% for kind, source_table, policy in kinds %}
    select
        '{{ kind }}' as anomaly_kind,
        '{{ source_table }}' as source_table,
        '{{ policy }}' as anomaly_policy,
        {{ loop.index }} as kind_order
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

-- the rows staging sets aside, by the anomaly that set them aside
set_aside as (

    select
        anomaly as anomaly_kind,
        count(*) as anomaly_count

    from event_rows
    where anomaly is not null
    group by anomaly

),

-- kept events more than a day after their session's first kept event
late as (

    select
        'late_events' as anomaly_kind,
        count(*) as anomaly_count

    from event_rows
    where
        anomaly is null
        and event_at > {{ dbt.dateadd('day', 1, 'session_started_at') }}

),

-- before attribution: sessions whose kept events name two users
two_users as (

    select
        'sessions_with_two_users' as anomaly_kind,
        count(distinct session_id) as anomaly_count

    from event_rows
    where anomaly is null and is_in_two_user_session

),

-- fct_orders has already joined each order to its items: its flag is counted rather than
-- every order matched against every order item again (docs/dbt-project.md)
without_items as (

    select
        'orders_without_items' as anomaly_kind,
        count(*) as anomaly_count

    from orders
    where not has_items

),

delisted as (

    select
        'delisted_products' as anomaly_kind,
        count(*) as anomaly_count

    from products
    where is_delisted

),

-- the time the counts describe: deterministic, so a rebuild of the same data writes the same rows
data_through as (

    select max(event_at) as data_through_at

    from event_rows
    where anomaly is null

),

counted as (

    select * from set_aside
    union all
    select * from late
    union all
    select * from two_users
    union all
    select * from without_items
    union all
    select * from delisted

),

final as (

    select
        ----------  ids
        kinds.anomaly_kind,
        ----------  strings
        kinds.source_table,
        kinds.anomaly_policy,
        ----------  numerics
        cast(coalesce(counted.anomaly_count, 0) as integer) as anomaly_count,
        cast(kinds.kind_order as integer) as kind_order,
        ----------  timestamps
        cast(data_through.data_through_at as {{ dbt.type_timestamp() }}) as data_through_at

    from kinds
    cross join data_through
    left join counted
        on kinds.anomaly_kind = counted.anomaly_kind

)

select * from final
