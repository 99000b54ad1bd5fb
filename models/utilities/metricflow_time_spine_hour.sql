{{ config(materialized='table') }}

with

hours as (

    {{ dbt.date_spine('hour', "cast('2020-01-01' as timestamp)", "cast('2031-01-01' as timestamp)") }}

),

final as (

    select cast(date_hour as {{ dbt.type_timestamp() }}) as date_hour
    from hours

)

select * from final
