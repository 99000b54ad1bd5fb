{#- Every row satisfies the boolean SQL expression (the rows that do not are failures). -#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not ({{ expression }})

{% endtest %}
