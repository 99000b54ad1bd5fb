{%- set event_types = "'page_view', 'add_to_cart', 'checkout', 'package_shipped'" -%}

-- every raw event row, renamed and cast, with the anomaly that keeps it out of
-- stg_greenery__events (null: kept); the first that applies, in this order
with

source as (

    select * from {{ source('greenery', 'events') }}

),

users as (

    select * from {{ ref('stg_greenery__users') }}

),

-- every product the snapshot has seen (dim_products' products), delisted ones included
products_seen as (

    select distinct product_id from {{ ref('stg_greenery__products_snapshot') }}

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

),

-- a row delivered twice (at-least-once tracking) repeats its event_id
numbered as (

    select
        *,
        row_number() over (
            partition by event_id order by event_at, session_id, event_type
        ) as copy_number,
        coalesce(event_type in ({{ event_types }}), false) as is_known_type

    from renamed

),

classified as (

    select
        numbered.*,
        case
            when numbered.copy_number > 1 then 'duplicate_events'
            when numbered.event_at is null then 'events_without_timestamp'
            when numbered.event_at > cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }})
                then 'events_in_future'
            when not numbered.is_known_type then 'unknown_event_types'
            when users.user_id is null then 'orphan_user_events'
            when numbered.product_id is not null and products_seen.product_id is null
                then 'orphan_product_events'
        end as anomaly

    from numbered
    left join users
        on numbered.user_id = users.user_id
    left join products_seen
        on numbered.product_id = products_seen.product_id

),

final as (

    select
        event_id,
        session_id,
        user_id,
        product_id,
        order_id,
        event_type,
        page_url,
        page_type,
        page_target_id,
        event_at,
        anomaly

    from classified

)

select * from final
