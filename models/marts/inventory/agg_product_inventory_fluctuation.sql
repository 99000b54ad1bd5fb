with

daily as (

    select * from {{ ref('fct_product_inventory_daily') }}

),

changes as (

    select * from {{ ref('fct_inventory_changes') }}

),

daily_with_week as (

    select
        *,
        cast({{ dbt.date_trunc('week', 'inventory_date') }} as date) as inventory_week

    from daily

),

-- the inventory at the end of each week (the last day of the week we have)
week_ends as (

    select
        product_id,
        inventory_week,
        max(inventory_date) as last_day

    from daily_with_week
    group by product_id, inventory_week

),

weekly as (

    select
        week_ends.product_id,
        week_ends.inventory_week,
        daily.inventory_on_hand

    from week_ends
    inner join daily
        on week_ends.product_id = daily.product_id
        and week_ends.last_day = daily.inventory_date

),

weekly_stats as (

    select
        product_id,
        count(*) as weeks_tracked,
        sum(case when inventory_on_hand = 0 then 1 else 0 end) as weeks_at_zero,
        stddev_samp(inventory_on_hand) as weekly_inventory_stddev

    from weekly
    group by product_id

),

daily_stats as (

    select
        product_id,
        max(product_name) as product_name,
        min(inventory_date) as first_day,
        max(inventory_date) as last_day,
        sum(case when is_out_of_stock then 1 else 0 end) as days_at_zero,
        min(case when is_out_of_stock then inventory_date end) as first_out_of_stock_date

    from daily
    group by product_id

),

first_and_last as (

    select
        daily_stats.product_id,
        first_day_inventory.inventory_on_hand as first_inventory,
        last_day_inventory.inventory_on_hand as last_inventory

    from daily_stats
    inner join daily as first_day_inventory
        on daily_stats.product_id = first_day_inventory.product_id
        and daily_stats.first_day = first_day_inventory.inventory_date
    inner join daily as last_day_inventory
        on daily_stats.product_id = last_day_inventory.product_id
        and daily_stats.last_day = last_day_inventory.inventory_date

),

change_stats as (

    select
        product_id,
        count(*) as inventory_changes,
        sum(units_moved) as units_moved,
        sum(case when went_out_of_stock then 1 else 0 end) as stockouts,
        sum(case when was_restocked then 1 else 0 end) as restocks,
        min(case when was_restocked then change_date end) as first_restocked_date

    from changes
    group by product_id

),

final as (

    select
        ----------  ids
        daily_stats.product_id,
        ----------  strings
        daily_stats.product_name,
        ----------  numerics
        cast(coalesce(change_stats.inventory_changes, 0) as integer) as inventory_changes,
        cast(coalesce(change_stats.units_moved, 0) as integer) as units_moved,
        cast(first_and_last.last_inventory - first_and_last.first_inventory as integer) as net_change,
        cast(
            coalesce(weekly_stats.weekly_inventory_stddev, 0) as double precision
        ) as weekly_inventory_stddev,
        cast(first_and_last.first_inventory as integer) as first_inventory,
        cast(first_and_last.last_inventory as integer) as last_inventory,
        cast(coalesce(change_stats.stockouts, 0) as integer) as stockouts,
        cast(coalesce(change_stats.restocks, 0) as integer) as restocks,
        cast(daily_stats.days_at_zero as integer) as days_at_zero,
        cast(weekly_stats.weeks_at_zero as integer) as weeks_at_zero,
        cast(weekly_stats.weeks_tracked as integer) as weeks_tracked,
        ----------  booleans
        daily_stats.days_at_zero > 0 as has_been_out_of_stock,
        ----------  timestamps
        daily_stats.first_out_of_stock_date,
        change_stats.first_restocked_date

    from daily_stats
    inner join first_and_last
        on daily_stats.product_id = first_and_last.product_id
    inner join weekly_stats
        on daily_stats.product_id = weekly_stats.product_id
    left join change_stats
        on daily_stats.product_id = change_stats.product_id

)

select * from final
