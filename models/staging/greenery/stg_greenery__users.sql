with

source as (

    select * from {{ source('greenery', 'users') }}

),

renamed as (

    select
        ----------  ids
        cast(user_id as {{ id_type() }}) as user_id,
        cast(address_id as {{ id_type() }}) as address_id,
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
