-- the website events the models use: stg_greenery__event_rows without the rows an anomaly
-- sets aside (duplicate copies, no or future time, unknown type, orphan user or product),
-- each session attributed to its first user (docs/dbt-project.md, "Dirty data")
with

event_rows as (

    select * from {{ ref('stg_greenery__event_rows') }}

),

-- the id the page URL names: where stg_greenery__event_rows did not store the URL, the row's
-- product or order (macros/page_url.sql), which the URL is built back from below (no URL
-- built to split it off again: its not_null test at 36.0 M events 0.4 s against 2.3 s)
kept as (

    select
        *,
        case
            when irregular_page_url is null then {{ page_target_id('product_id', 'order_id') }}
            else {{ dbt.split_part('irregular_page_url', "'/'", 5) }}
        end as page_target_id

    from event_rows
    where anomaly is null

),

final as (

    select
        ----------  ids
        event_id,
        session_id,
        -- a session touching two users belongs to the user of its first event
        session_user_id as user_id,
        product_id,
        order_id,
        ----------  strings
        event_type,
        coalesce(irregular_page_url, {{ page_url('page_type', 'page_target_id') }}) as page_url,
        page_type,
        page_target_id,
        ----------  numerics
        position_in_session,
        ----------  timestamps (UTC)
        event_at,
        built_at,
        event_date

    from kept

)

select * from final
