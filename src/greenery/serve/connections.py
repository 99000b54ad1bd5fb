"""Connection and header limits for the HTTP server (uvicorn, httptools): a socket flood cannot take it down.

- at most `max_connections` open connections; one more closes the connection that has been
  idle longest (between requests, or still sending its headers), or is refused with a 503
  when every connection is busy with a request; the cap stays well under the open-file limit;
- a request must send all its headers within HEADER_TIMEOUT_S of its first byte (or of the
  connection opening), and its body within BODY_TIMEOUT_S after that (slowloris);
- headers at most MAX_HEADERS in number and MAX_HEADER_BYTES together (431);
- an idle keep-alive connection is closed after KEEP_ALIVE_S.

So two thousand half-sent requests cost the server nothing it cannot take back: /healthz
and real clients still get through.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import weakref
from collections import OrderedDict
from typing import Any

import uvicorn
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

MAX_CONNECTIONS = 1024  # open HTTP connections (lower when the open-file limit is low)
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
KEEP_ALIVE_S = 5.0
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 43\r\n\r\ntoo many connections are busy: retry later\n"
)
log = logging.getLogger("greenery.serve")


def connection_cap(max_connections: int = MAX_CONNECTIONS) -> int:
    """The connection cap: `max_connections`, or a quarter of the open-file limit if that is lower."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(max_connections, soft // 4)) if soft != resource.RLIM_INFINITY else max_connections


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit (at most 65,536); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65_536 if hard == resource.RLIM_INFINITY else min(hard, 65_536)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


class GuardedConfig(uvicorn.Config):
    """uvicorn's Config with the limits above (the app is wrapped to count headers)."""

    def __init__(self, app: ASGIApp, *, max_connections: int = MAX_CONNECTIONS, **kwargs: Any) -> None:
        kwargs.setdefault("timeout_keep_alive", KEEP_ALIVE_S)
        super().__init__(
            HeaderLimits(app),
            http=GuardedHttpProtocol,
            **kwargs,
        )
        self.max_connections = connection_cap(max_connections)


class HeaderLimits:
    """Refuses a request with more than MAX_HEADERS headers or MAX_HEADER_BYTES of them (431).

    (GuardedHttpProtocol refuses headers still arriving past MAX_HEADER_BYTES; this catches
    them sent in one go, and too many of them.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            if len(headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES:
                message = f"at most {MAX_HEADERS} request headers, {MAX_HEADER_BYTES:,} bytes together"
                await PlainTextResponse(message, 431)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# The open connections of each server, least recently active first.
_connections: weakref.WeakKeyDictionary[ServerState, OrderedDict[GuardedHttpProtocol, None]] = (
    weakref.WeakKeyDictionary()
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap and request deadlines (see the module docstring)."""

    def __init__(self, config: Any, server_state: ServerState, app_state: dict[str, Any], _loop: Any = None):
        super().__init__(config, server_state, app_state, _loop)
        self._open = _connections.setdefault(server_state, OrderedDict())
        self._cap: int = getattr(config, "max_connections", MAX_CONNECTIONS)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_headers = True  # until a request's headers are complete (or between requests)
        self._header_bytes = 0  # bytes of the request's headers so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self._open) >= self._cap and not self._close_idlest():
            log.warning("HTTP: %d connections, all busy: refusing one more", len(self._open))
            self.transport.write(_REFUSED)
            self.transport.close()
            return
        self._open[self] = None
        self._arm("headers", HEADER_TIMEOUT_S)

    def connection_lost(self, exc: Exception | None) -> None:
        self._open.pop(self, None)
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self in self._open:
            self._open.move_to_end(self)  # most recently active last
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._in_headers and self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._refuse_headers()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        if self._deadline is None:
            self._arm("headers", HEADER_TIMEOUT_S)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._in_headers, self._header_bytes = False, 0
        self._arm("body", BODY_TIMEOUT_S)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()  # the app has the request: its own limits apply
        self._in_headers = True  # what arrives next starts the next request

    def _refuse_headers(self) -> None:
        message = f"the request headers are over {MAX_HEADER_BYTES:,} bytes"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            + f"connection: close\r\ncontent-length: {len(message)}\r\n\r\n{message}".encode()
        )
        self._close("(its headers were too large)")

    def _idle(self) -> bool:
        """Between requests, or still sending headers: nothing of the app's is running."""
        return self.cycle is None or self.cycle.response_complete

    def _close_idlest(self) -> bool:
        """Close the idle connection least recently active, if there is one."""
        for other in self._open:
            if other._idle():
                other._close("to make room for a new connection")
                return True
        return False

    def _close(self, why: str) -> None:
        self._open.pop(self, None)
        self._disarm()
        if not self.transport.is_closing():
            log.debug("HTTP: closing %s %s", self.client, why)
            self.transport.close()

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._close, f"(its request {what} took too long)")

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
