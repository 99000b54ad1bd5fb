{#- the history runs through the last snapshot run (see macros/record_snapshot_run.sql) -#}
{%- set runs = snapshot_runs_relation(ref('products_snapshot')) -%}
{%- set runs_logged = execute
    and adapter.get_relation(runs.database, runs.schema, runs.identifier) is not none -%}

with

versions as (

    select * from {{ ref('stg_greenery__products_snapshot') }}

),

days as (

    select * from {{ ref('metricflow_time_spine') }}

),

bounds as (

    select
        cast(min(valid_from) as date) as first_day,
        {% if var('inventory_through') -%}
        cast('{{ var("inventory_through") }}' as date) as last_day
        {%- elif runs_logged -%}
        (select cast(max(snapshot_runs.snapshot_at) as date) from {{ runs }} as snapshot_runs) as last_day
        {%- else -%}
        cast(max(valid_from) as date) as last_day
        {%- endif %}

    from versions

),

-- the version in force at the end of each day (windows never overlap: one per day)
daily as (

    select
        days.date_day as inventory_date,
        versions.product_id,
        versions.product_version_id,
        versions.product_name,
        versions.inventory,
        versions.is_deleted

    from days
    inner join bounds
        on days.date_day between bounds.first_day and bounds.last_day
    inner join versions
        on cast(versions.valid_from as date) <= days.date_day
        and (versions.valid_to is null or cast(versions.valid_to as date) > days.date_day)

),

final as (

    select
        ----------  ids
        cast(
            {{ dbt.concat(['product_id', "'-'", 'cast(inventory_date as ' ~ dbt.type_string() ~ ')']) }}
            as {{ dbt.type_string() }}
        ) as product_inventory_day_id,
        product_id,
        product_version_id,
        ----------  strings
        product_name,
        ----------  numerics
        cast(inventory as integer) as inventory_on_hand,
        ----------  booleans
        -- a delisted product has nothing on hand, but is not "out of stock": it is gone
        inventory = 0 and not is_deleted as is_out_of_stock,
        is_deleted as is_delisted,
        ----------  timestamps
        inventory_date

    from daily

)

select * from final
