-- the website events the models use: stg_greenery__event_rows without the rows an anomaly
-- sets aside (duplicate copies, no or future time, unknown type, orphan user or product),
-- each session attributed to its first user (docs/dbt-project.md, "Dirty data")
with

event_rows as (

    select * from {{ ref('stg_greenery__event_rows') }}

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
        page_url,
        page_type,
        -- https://greenary.com/<page type>/<id>
        {{ dbt.split_part('page_url', "'/'", 5) }} as page_target_id,
        ----------  numerics
        position_in_session,
        ----------  timestamps (UTC)
        event_at,
        event_date

    from event_rows
    where anomaly is null

)

select * from final
