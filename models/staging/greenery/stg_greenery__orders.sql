with

source as (

    select * from {{ source('greenery', 'orders') }}

),

renamed as (

    select
        ----------  ids
        cast(order_id as {{ id_type() }}) as order_id,
        cast(user_id as {{ id_type() }}) as user_id,
        cast(promo_id as {{ dbt.type_string() }}) as promo_id,
        cast(address_id as {{ id_type() }}) as address_id,
        cast(tracking_id as {{ dbt.type_string() }}) as tracking_id,
        ----------  strings
        status as order_status,
        shipping_service,
        ----------  numerics
        cast(order_cost as numeric(12, 2)) as order_cost,
        cast(shipping_cost as numeric(12, 2)) as shipping_cost,
        cast(order_total as numeric(12, 2)) as order_total,
        ----------  timestamps (UTC)
        cast(created_at as {{ dbt.type_timestamp() }}) as ordered_at,
        cast(estimated_delivery_at as {{ dbt.type_timestamp() }}) as estimated_delivery_at,
        cast(delivered_at as {{ dbt.type_timestamp() }}) as delivered_at

    from source

)

select * from renamed
