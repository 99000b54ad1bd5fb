"""The embedded DuckDB warehouse: where it lives (store), what runs dbt and mf (dbt), and the
weekly snapshot replay and build (replay, build)."""
