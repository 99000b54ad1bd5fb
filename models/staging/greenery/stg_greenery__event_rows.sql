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
{#- each session's rows, its kept rows first, in time order, then by event_id -#}
{%- set kept_first = 'partition by session_id'
    ~ ' order by case when anomaly is null then 0 else 1 end, event_at, event_id' -%}
{%- set by_session = '(' ~ kept_first ~ ')' -%}
{%- set whole_session = '(' ~ kept_first ~ ' rows between unbounded preceding and unbounded following)' -%}
{#- a full build reads the raw events again for each use rather than copy them all
    (macros/not_materialized.sql) -#}

-- every raw event row, renamed and cast, with the anomaly that keeps it out of
-- stg_greenery__events (null: kept; the first that applies, in this order) and what its
-- session's kept rows say: its first time, its first user, whether they name two users, and
-- the kept row's position in the session
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
        cast(event_id as {{ id_type() }}) as event_id,
        cast(session_id as {{ id_type() }}) as session_id,
        cast(user_id as {{ id_type() }}) as user_id,
        cast(product_id as {{ id_type() }}) as product_id,
        cast(order_id as {{ id_type() }}) as order_id,
        ----------  strings
        event_type,
        page_url,
        -- https://greenary.com/<page type>/<id>: product, checkout or shipping. The table
        -- stores the URL only when the row cannot build it back (irregular_page_url, below)
        {{ dbt.split_part('page_url', "'/'", 4) }} as page_type,
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
        end as anomaly,
        -- null when the URL is the one the row's page type and product or order make
        -- (macros/page_url.sql): stg_greenery__events builds it back
        case
            when
                numbered.page_url
                = {{ page_url(
                    'numbered.page_type', page_target_id('numbered.product_id', 'numbered.order_id')
                ) }}
                then null
            else numbered.page_url
        end as irregular_page_url

    from numbered
    left join users
        on numbered.user_id = users.user_id
    left join products_seen
        on numbered.product_id = products_seen.product_id

),

-- per session, over its kept rows: when it started, its first user (event time, then event_id),
-- whether they name two users, and each kept row's position. The kept rows sort first, so one
-- sort of each session's rows gives all four
final as (

    select
        ----------  ids
        event_id,
        session_id,
        user_id,
        first_value(case when anomaly is null then user_id end) over {{ by_session }} as session_user_id,
        product_id,
        order_id,
        ----------  strings
        event_type,
        irregular_page_url,
        page_type,
        anomaly,
        ----------  booleans
        coalesce(
            min(case when anomaly is null then user_id end) over {{ whole_session }}
            <> max(case when anomaly is null then user_id end) over {{ whole_session }},
            false
        ) as is_in_two_user_session,
        ----------  numerics
        cast(
            case when anomaly is null then row_number() over {{ by_session }} end as integer
        ) as position_in_session,
        ----------  timestamps (UTC)
        event_at,
        min(case when anomaly is null then event_at end) over {{ whole_session }} as session_started_at,
        {{ build_started_at() }} as built_at,
        ----------  dates
        -- Snowflake's clustering key (dbt_project.yml)
        cast(event_at as date) as event_date

    from classified

)

select * from final
