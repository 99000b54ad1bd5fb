"""Who may ask: one bearer token for every protocol, and where an unauthenticated server may bind."""

from __future__ import annotations

import hmac
import ipaddress
import os

TOKEN_ENV = "GREENERY_API_TOKEN"
NOT_AUTHORIZED = "User is not authorized"  # dbt-sl-sdk maps exactly this to AuthError


def configured_token() -> str | None:
    """The token from ``$GREENERY_API_TOKEN`` (None when unset or empty: unauthenticated)."""
    return os.environ.get(TOKEN_ENV) or None


def bearer_matches(authorization: str, token: str) -> bool:
    """An ``Authorization`` header value ``Bearer <token>`` (scheme case-insensitive; constant time)."""
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
