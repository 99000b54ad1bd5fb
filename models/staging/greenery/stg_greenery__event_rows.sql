{#-
    The one staging model that is a table, incremental: at 36.7 M events a view of it cost
    45 s per read, and the event facts, data_quality_anomalies and a dozen data tests read it.
    An incremental run recomputes whole every session with a raw row in the lookback window
    (or a row without a time), from all its raw rows (docs/dbt-project.md).
-#}
{{
    config(
        materialized='incremental',
        unique_key='session_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

{%- set event_types = "'page_view', 'add_to_cart', 'checkout', 'package_shipped'" -%}
{#- a full build reads the raw events again for each use rather than copy them all
    (macros/not_materialized.sql) -#}

-- every raw event row, renamed and cast, with the anomaly that keeps it out of
-- stg_greenery__events (null: kept; the first that applies, in this order) and what its
-- session's kept rows say: its first time, its first user, whether they name two users
with

source as {{ not_materialized() }} (

    select * from {{ source('greenery', 'events') }}

),

users as (

    select * from {{ ref('stg_greenery__users') }}

),

-- every product the snapshot has seen (dim_products' products), delisted ones included
products_seen as (

    select distinct product_id from {{ ref('stg_greenery__products_snapshot') }}

),

-- incremental: the raw rows of every session with a row in the lookback window or a row
-- without a time
{%- set in_lookback = 'created_at is null or cast(created_at as ' ~ dbt.type_timestamp() ~ ') >= '
    ~ incremental_cutoff('event_at') %}
arrived as {{ not_materialized() }} (

    select source.*
    from source
    {% if is_incremental() -%}
    {{ join_touched('source', 'session_id', source('greenery', 'events'), in_lookback) }}
    {%- endif %}

),

renamed as {{ not_materialized() }} (

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

    from arrived

),

-- a row delivered twice (at-least-once tracking) repeats its event_id; only those rows are
-- numbered (a window over every row costs a sort of all of them). Grouped by a 64-bit hash
-- of the id, not the 36-character id: a collision only sends a few more rows to the window,
-- which numbers them by the id itself
repeated as (

    select hash(event_id) as event_id_hash

    from renamed
    group by hash(event_id)
    having count(*) > 1

),

numbered as (

    select
        renamed.*,
        1 as copy_number

    from renamed
    left join repeated
        on hash(renamed.event_id) = repeated.event_id_hash
    where repeated.event_id_hash is null

    union all

    select
        renamed.*,
        row_number() over (
            partition by renamed.event_id order by renamed.event_at, renamed.session_id, renamed.event_type
        ) as copy_number

    from renamed
    inner join repeated
        on hash(renamed.event_id) = repeated.event_id_hash

),

classified as (

    select
        numbered.*,
        case
            when numbered.copy_number > 1 then 'duplicate_events'
            when numbered.event_at is null then 'events_without_timestamp'
            when numbered.event_at > {{ now_timestamp() }} then 'events_in_future'
            when not coalesce(numbered.event_type in ({{ event_types }}), false) then 'unknown_event_types'
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

-- per session, its kept rows: when it started, and its user if they name only one
sessions as (

    select
        session_id,
        min(event_at) as session_started_at,
        min(user_id) as lowest_user_id,
        min(user_id) <> max(user_id) as has_two_users

    from classified
    where anomaly is null
    group by session_id

),

-- a session naming two users belongs to the user of its first kept event
first_users as (

    select distinct
        classified.session_id,
        first_value(classified.user_id) over (
            partition by classified.session_id order by classified.event_at, classified.event_id
        ) as first_user_id

    from classified
    inner join sessions
        on classified.session_id = sessions.session_id
    where
        classified.anomaly is null
        and sessions.has_two_users

),

final as (

    select
        ----------  ids
        classified.event_id,
        classified.session_id,
        classified.user_id,
        coalesce(first_users.first_user_id, sessions.lowest_user_id) as session_user_id,
        classified.product_id,
        classified.order_id,
        ----------  strings
        classified.event_type,
        classified.page_url,
        classified.page_type,
        classified.page_target_id,
        classified.anomaly,
        ----------  booleans
        coalesce(sessions.has_two_users, false) as is_in_two_user_session,
        ----------  timestamps (UTC)
        classified.event_at,
        sessions.session_started_at

    from classified
    left join sessions
        on classified.session_id = sessions.session_id
    left join first_users
        on classified.session_id = first_users.session_id

)

select * from final
