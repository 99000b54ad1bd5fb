{{
    config(
        materialized='incremental',
        unique_key='user_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

with

orders as (

    select * from {{ ref('stg_greenery__orders') }}

),

order_items as (

    select * from {{ ref('stg_greenery__order_items') }}

),

promos as (

    select * from {{ ref('stg_greenery__promos') }}

),

addresses as (

    select * from {{ ref('stg_greenery__addresses') }}

),

items_per_order as (

    select
        order_id,
        count(*) as products_in_order,
        sum(quantity) as units_in_order

    from order_items
    group by order_id

),

-- every order as it is now, but for its number among its user's orders
order_rows as (

    select
        ----------  ids
        orders.order_id,
        orders.user_id,
        orders.promo_id,
        orders.address_id,
        ----------  strings
        orders.order_status,
        orders.shipping_service,
        addresses.state as shipping_state,
        ----------  numerics
        cast(items_per_order.products_in_order as integer) as products_in_order,
        cast(items_per_order.units_in_order as integer) as units_in_order,
        orders.order_cost,
        orders.shipping_cost,
        cast(coalesce(promos.discount_amount, 0) as numeric(12, 2)) as discount_amount,
        orders.order_total,
        cast(
            {{ dbt.datediff('orders.ordered_at', 'orders.delivered_at', 'hour') }}
            as integer
        ) as hours_to_delivery,
        ----------  booleans
        orders.promo_id is not null as has_promo,
        -- an order whose items never arrived is kept, flagged (data_quality_anomalies counts it)
        items_per_order.order_id is not null as has_items,
        orders.order_status = 'delivered' as is_delivered,
        ----------  timestamps
        orders.ordered_at,
        cast(orders.ordered_at as date) as order_date,
        orders.estimated_delivery_at,
        orders.delivered_at

    from orders
    left join items_per_order
        on orders.order_id = items_per_order.order_id
    left join promos
        on orders.promo_id = promos.promo_id
    left join addresses
        on orders.address_id = addresses.address_id

),

-- incremental: every order of the users whose orders are not all as the table has them (a
-- new order, or one changed in place: raw orders carry no update time), numbered again
-- (docs/dbt-project.md, "Incremental orders")
orders_to_number as (

    select order_rows.*
    from order_rows
    {{ join_touched_by_changes(
        'order_rows', 'user_id', 'order_id', except_columns=['user_order_number', 'built_at']
    ) }}

),

final as (

    select
        *,
        cast(row_number() over (
            partition by user_id order by ordered_at, order_id
        ) as integer) as user_order_number,
        {{ build_started_at() }} as built_at

    from orders_to_number

)

select * from final
