with

source as (

    select * from {{ source('greenery', 'products') }}

),

renamed as (

    select
        ----------  ids
        cast(product_id as {{ id_type() }}) as product_id,
        ----------  strings
        name as product_name,
        ----------  numerics
        cast(price as numeric(12, 2)) as price,
        cast(inventory as integer) as inventory

    from source

)

select * from renamed
