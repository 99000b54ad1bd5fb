-- every product the snapshot has ever seen, with its latest known state: a product delisted
-- from the catalog (the snapshot's hard delete, `hard_deletes: new_record`) keeps its row,
-- so the events, order items and session facts that name it keep their dimension
with

versions as (

    select * from {{ ref('stg_greenery__products_snapshot') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by product_id order by valid_from desc, product_version_id asc
        ) as recency,
        min(valid_from) over (partition by product_id) as first_seen_at

    from versions

),

latest as (

    select * from ranked
    where recency = 1

),

final as (

    select
        ----------  ids
        product_id,
        ----------  strings
        product_name,
        case
            when price < 25 then 'under $25'
            when price < 50 then '$25–49.99'
            when price < 75 then '$50–74.99'
            else '$75 and up'
        end as price_band,
        ----------  numerics
        price,
        inventory as current_inventory,
        ----------  booleans
        inventory = 0 and not is_deleted as is_out_of_stock,
        is_deleted as is_delisted,
        not is_deleted as is_current,
        ----------  timestamps
        first_seen_at,
        case when is_deleted then valid_from end as delisted_at

    from latest

)

select * from final
