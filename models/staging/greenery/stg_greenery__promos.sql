with

source as (

    select * from {{ source('greenery', 'promos') }}

),

renamed as (

    select
        ----------  ids
        cast(promo_id as {{ dbt.type_string() }}) as promo_id,
        ----------  strings
        status as promo_status,
        ----------  numerics
        cast(discount as numeric(12, 2)) as discount_amount,
        ----------  booleans
        status = 'active' as is_active

    from source

)

select * from renamed
