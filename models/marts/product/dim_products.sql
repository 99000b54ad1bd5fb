with

products as (

    select * from {{ ref('stg_greenery__products') }}

),

final as (

    select
        ----------  ids
        product_id,
        ----------  strings
        product_name,
        case
            when price < 25 then 'under $25'
            when price < 50 then '$25–49.99'
            when price < 75 then '$50–74.99'
            else '$75 and up'
        end as price_band,
        ----------  numerics
        price,
        inventory as current_inventory,
        ----------  booleans
        inventory = 0 as is_out_of_stock

    from products

)

select * from final
