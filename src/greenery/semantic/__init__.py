"""The semantic layer in-process: a warm MetricFlow engine (layer), where-filter validation
(filters) and saved-query exports (exports)."""
