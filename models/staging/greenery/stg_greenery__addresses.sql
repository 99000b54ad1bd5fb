with

source as (

    select * from {{ source('greenery', 'addresses') }}

),

renamed as (

    select
        ----------  ids
        cast(address_id as {{ id_type() }}) as address_id,
        ----------  strings
        address,
        -- the export stored zip codes as integers and lost their leading zeros
        lpad(cast(zipcode as {{ dbt.type_string() }}), 5, '0') as zipcode,
        state,
        country

    from source

)

select * from renamed
