{#- Every non-null value of the column has exactly `length` characters. -#}
{% test accepted_length(model, column_name, length) %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and {{ dbt.length(column_name) }} != {{ length }}

{% endtest %}
