-- Two versions of the same product are never valid at the same time, and at most one is
-- current. Returns the offending pairs.
with

versions as (

    select * from {{ ref('products_snapshot') }}

),

overlapping_versions as (

    select
        earlier.product_id,
        earlier.dbt_scd_id as earlier_version,
        later.dbt_scd_id as later_version

    from versions as earlier
    inner join versions as later
        on earlier.product_id = later.product_id
        and earlier.dbt_scd_id != later.dbt_scd_id
        and earlier.dbt_valid_from <= later.dbt_valid_from
        and (earlier.dbt_valid_to is null or earlier.dbt_valid_to > later.dbt_valid_from)

)

select * from overlapping_versions
