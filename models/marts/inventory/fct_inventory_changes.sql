with

versions as (

    select * from {{ ref('stg_greenery__products_snapshot') }}

),

with_previous as (

    select
        *,
        lag(inventory) over (
            partition by product_id order by valid_from
        ) as previous_inventory

    from versions

),

changes as (

    select * from with_previous
    where
        previous_inventory is not null
        and inventory != previous_inventory

),

final as (

    select
        ----------  ids
        product_version_id as inventory_change_id,
        product_id,
        ----------  strings
        product_name,
        ----------  numerics
        cast(previous_inventory as integer) as previous_inventory,
        cast(inventory as integer) as new_inventory,
        cast(inventory - previous_inventory as integer) as inventory_delta,
        cast(abs(inventory - previous_inventory) as integer) as units_moved,
        ----------  booleans
        inventory > previous_inventory as is_increase,
        inventory = 0 as went_out_of_stock,
        previous_inventory = 0 as was_restocked,
        ----------  timestamps
        valid_from as changed_at,
        cast(valid_from as date) as change_date,
        cast({{ dbt.date_trunc('week', 'valid_from') }} as date) as change_week

    from changes

)

select * from final
