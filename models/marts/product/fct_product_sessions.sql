{#-
    A view: every column but the key is int_product_sessions', computed when its session was.
    The key, a 73-character string, is made when read rather than written (docs/dbt-project.md,
    "Incremental session facts", says what writing it cost).
-#}
{{ config(materialized='view') }}

with

product_sessions as (

    select * from {{ ref('int_product_sessions') }}

),

final as (

    select
        ----------  ids
        cast(
            {{ dbt.concat(['session_id', "'-'", 'product_id']) }}
            as {{ dbt.type_string() }}
        ) as product_session_id,
        session_id,
        product_id,
        user_id,
        order_id,
        ----------  strings
        visitor_type,
        ----------  numerics
        units_purchased,
        ----------  booleans
        has_viewed,
        has_added_to_cart,
        has_purchased,
        ----------  timestamps
        session_started_at,
        built_at,
        session_date

    from product_sessions

)

select * from final
