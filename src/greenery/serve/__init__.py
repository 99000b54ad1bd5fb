"""Serving the semantic layer: one query service that every protocol adapts.

service (published versions, jobs, caches) with catalog (metadata) and statements (dbt's
semantic-layer templates) → protocol adapters graphql and flight, which never import each
other → http (GraphQL and the dashboard over HTTP) → run (`greenery serve`: every transport
on one service). auth is the token check they share.
"""
