with

source as (

    select * from {{ source('greenery', 'users') }}

),

renamed as (

    select
        ----------  ids
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(address_id as {{ dbt.type_string() }}) as address_id,
        ----------  strings
        first_name,
        last_name,
        email,
        phone_number,
        ----------  timestamps (UTC)
        cast(created_at as {{ dbt.type_timestamp() }}) as created_at,
        cast(updated_at as {{ dbt.type_timestamp() }}) as updated_at

    from source

)

select * from renamed
