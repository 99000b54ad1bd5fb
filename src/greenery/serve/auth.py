"""Who may ask: one bearer token for every protocol, and where an unauthenticated server may bind."""

from __future__ import annotations

import hmac
import ipaddress
import os

TOKEN_ENV = "GREENERY_API_TOKEN"
MIN_TOKEN_CHARS = 32  # off loopback
NOT_AUTHORIZED = "User is not authorized"  # dbt-sl-sdk maps exactly this to AuthError


def configured_token() -> str | None:
    """The token from ``$GREENERY_API_TOKEN`` (None when unset or empty: unauthenticated)."""
    return os.environ.get(TOKEN_ENV) or None


def bearer_matches(authorization: str, token: str) -> bool:
    """An ``Authorization`` header value ``Bearer <token>`` (scheme case-insensitive; constant time)."""
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def bind_refusal(host: str, token: str | None, what: str = "serve") -> str | None:
    """Why an endpoint may not listen on `host` with this token; None when it may.

    Off loopback a token is required, and a long one: a short token can be guessed.
    """
    if is_loopback(host):
        return None
    if token is None:
        return (
            f"refusing to {what} on {host} without authentication: set {TOKEN_ENV} to a secret token, "
            "or bind to loopback (--host 127.0.0.1)"
        )
    if len(token) < MIN_TOKEN_CHARS:
        return (
            f"refusing to {what} on {host} with a token shorter than {MIN_TOKEN_CHARS} characters: set a "
            f"longer {TOKEN_ENV} (python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
            "or bind to loopback"
        )
    return None


def host_name(host_header: str) -> str:
    """The name in a Host header, without its port (``[::1]:8000`` → ``::1``)."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
