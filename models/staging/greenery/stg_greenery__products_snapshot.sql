with

source as (

    select * from {{ ref('products_snapshot') }}

),

renamed as (

    select
        ----------  ids
        cast(dbt_scd_id as {{ dbt.type_string() }}) as product_version_id,
        cast(product_id as {{ id_type() }}) as product_id,
        ----------  strings
        name as product_name,
        ----------  numerics
        -- a delisted product has nothing on hand
        case
            when cast(dbt_is_deleted as {{ dbt.type_string() }}) = 'True' then 0
            else cast(inventory as integer)
        end as inventory,
        cast(price as numeric(12, 2)) as price,
        ----------  booleans
        cast(dbt_is_deleted as {{ dbt.type_string() }}) = 'True' as is_deleted,
        ----------  timestamps
        cast(dbt_valid_from as {{ dbt.type_timestamp() }}) as valid_from,
        cast(dbt_valid_to as {{ dbt.type_timestamp() }}) as valid_to

    from source

)

select * from renamed
