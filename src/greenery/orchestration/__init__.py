"""The Dagster code location: the project as assets, jobs, schedules, a sensor and checks.

    dagster dev -m greenery.orchestration.definitions     # what `make orchestrate` runs

raw tables (loader, weekly products) → the dbt project (staging, the products snapshot,
intermediate, marts, time spines; dbt tests as asset checks) → one asset per saved-query
export → the published reader copy → the dashboard's exposure. See docs/reflection.md (3B).
"""
