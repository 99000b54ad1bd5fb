with

users as (

    select * from {{ ref('stg_greenery__users') }}

),

addresses as (

    select * from {{ ref('stg_greenery__addresses') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

-- an order without items bought nothing: it does not make its user a buyer
orders_per_user as (

    select
        user_id,
        count(*) as orders,
        sum(order_total) as lifetime_revenue,
        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at

    from orders
    where has_items
    group by user_id

),

final as (

    select
        ----------  ids
        users.user_id,
        users.address_id,
        ----------  strings
        users.first_name,
        users.last_name,
        addresses.state,
        addresses.zipcode,
        case
            when coalesce(orders_per_user.orders, 0) = 0 then 'no orders'
            when orders_per_user.orders = 1 then 'one-time buyer'
            else 'repeat buyer'
        end as buyer_segment,
        ----------  numerics
        cast(coalesce(orders_per_user.orders, 0) as integer) as orders,
        cast(coalesce(orders_per_user.lifetime_revenue, 0) as numeric(12, 2)) as lifetime_revenue,
        ----------  booleans
        coalesce(orders_per_user.orders, 0) >= 2 as is_repeat_buyer,
        ----------  timestamps
        users.created_at,
        orders_per_user.first_ordered_at,
        orders_per_user.last_ordered_at

    from users
    left join addresses
        on users.address_id = addresses.address_id
    left join orders_per_user
        on users.user_id = orders_per_user.user_id

)

select * from final
