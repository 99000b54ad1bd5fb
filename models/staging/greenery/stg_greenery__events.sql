with

source as (

    select * from {{ source('greenery', 'events') }}

),

renamed as (

    select
        ----------  ids
        cast(event_id as {{ dbt.type_string() }}) as event_id,
        cast(session_id as {{ dbt.type_string() }}) as session_id,
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(product_id as {{ dbt.type_string() }}) as product_id,
        cast(order_id as {{ dbt.type_string() }}) as order_id,
        ----------  strings
        event_type,
        page_url,
        -- https://greenary.com/<page type>/<id>: product, checkout or shipping
        {{ dbt.split_part('page_url', "'/'", 4) }} as page_type,
        {{ dbt.split_part('page_url', "'/'", 5) }} as page_target_id,
        ----------  timestamps (UTC)
        cast(created_at as {{ dbt.type_timestamp() }}) as event_at

    from source

)

select * from renamed
