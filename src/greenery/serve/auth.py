"""Who may ask: one token for every protocol (a bearer token, or a SCRAM password for Postgres clients),
and where an unauthenticated server may bind."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets

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


def netloc(host: str, port: int) -> str:
    """host:port as a URL writes it (``[::1]:8000``: an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ScramRefused(ValueError):
    """A SCRAM exchange that failed (malformed message or wrong password)."""


class ScramSha256:
    """The server's side of SCRAM-SHA-256 (RFC 5802/7677) with the token as the password.

    How Postgres clients (libpq, pgjdbc, psycopg) send a password without revealing it. The
    user name inside SCRAM is ignored, as PostgreSQL does (libpq sends it empty); no channel
    binding (the endpoint has no TLS). One object per authentication attempt.
    """

    ITERATIONS = 4096

    def __init__(self, salted_password: bytes, salt: bytes) -> None:
        self._salted, self._salt = salted_password, salt
        self._nonce = ""
        self._header = ""
        self._auth_start = ""  # client-first-bare "," server-first

    @staticmethod
    def salted(token: str, salt: bytes) -> bytes:
        """PBKDF2 of the token (compute once per server, not per connection)."""
        return hashlib.pbkdf2_hmac("sha256", token.encode(), salt, ScramSha256.ITERATIONS)

    def first(self, client_first: str) -> str:
        """client-first-message → server-first-message."""
        header, sep, bare = client_first.partition(",")
        authzid, sep2, bare = bare.partition(",")
        if not (sep and sep2) or header not in ("n", "y") or authzid:
            raise ScramRefused("SCRAM: expected a client-first message without channel binding")
        client_nonce = _scram_attributes(bare).get("r", "")
        if not client_nonce:
            raise ScramRefused("SCRAM: the client-first message has no nonce")
        self._header = f"{header},,"
        self._nonce = client_nonce + secrets.token_urlsafe(18)
        server_first = f"r={self._nonce},s={base64.b64encode(self._salt).decode()},i={self.ITERATIONS}"
        self._auth_start = f"{bare},{server_first}"
        return server_first

    def final(self, client_final: str) -> str:
        """client-final-message → server-final-message; ScramRefused if the proof is wrong."""
        without_proof, sep, proof = client_final.rpartition(",p=")
        attributes = _scram_attributes(without_proof)
        expected_binding = base64.b64encode(self._header.encode()).decode()
        if not sep or attributes.get("c") != expected_binding or attributes.get("r") != self._nonce:
            raise ScramRefused("SCRAM: the client-final message does not match the exchange")
        auth_message = f"{self._auth_start},{without_proof}".encode()
        client_key = _hmac(self._salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        signature = _hmac(stored_key, auth_message)
        try:
            given = base64.b64decode(proof, validate=True)
        except ValueError:
            raise ScramRefused("SCRAM: the proof is not base64") from None
        recovered = bytes(a ^ b for a, b in zip(given, signature, strict=False))
        if len(given) != len(signature) or not hmac.compare_digest(
            hashlib.sha256(recovered).digest(), stored_key
        ):
            raise ScramRefused("SCRAM: wrong password")
        server_signature = _hmac(_hmac(self._salted, b"Server Key"), auth_message)
        return "v=" + base64.b64encode(server_signature).decode()


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _scram_attributes(message: str) -> dict[str, str]:
    """``a=1,b=2`` → {"a": "1", "b": "2"} (values may contain '=')."""
    pairs = (part.partition("=") for part in message.split(","))
    return {key: value for key, sep, value in pairs if sep and len(key) == 1}
