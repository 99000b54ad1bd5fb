with

source as (

    select * from {{ source('greenery', 'order_items') }}

),

renamed as (

    select
        ----------  ids
        {{ dbt.concat(['order_id', "'-'", 'product_id']) }} as order_item_id,
        cast(order_id as {{ id_type() }}) as order_id,
        cast(product_id as {{ id_type() }}) as product_id,
        ----------  numerics
        cast(quantity as integer) as quantity

    from source

)

select * from renamed
