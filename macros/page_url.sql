{#-
    A page of the shop as the website's events name it: https://greenary.com/<page type>/<id>,
    the id being the event's product (a product page) or its order (checkout, shipping).
    stg_greenery__event_rows stores a raw page_url only when it is not this
    (irregular_page_url) and stg_greenery__events builds it back, so the window that sorts
    every event row by session does not carry a 70-character URL: at 36.0 M events the model
    took 33.3–33.8 s against 38.4–43.0 s (docs/dbt-project.md, "Incremental session facts").
-#}

{#- the id such a URL names: the row's product, or else its order, as text -#}
{% macro page_target_id(product_id, order_id) -%}
    cast(coalesce({{ product_id }}, {{ order_id }}) as {{ dbt.type_string() }})
{%- endmacro %}

{% macro page_url(page_type, target_id) -%}
    {{ dbt.concat(["'https://greenary.com/'", page_type, "'/'", target_id]) }}
{%- endmacro %}
