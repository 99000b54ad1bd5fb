"""Benchmarks: `make bench` (python -m benchmarks) and its parts; outside the shipped package."""
