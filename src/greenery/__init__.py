"""Greenery's analytics project: warehouse, data, semantic layer, exports and server."""
