"""Developer checks run by `make lint`; outside the shipped package."""
