"""The HTTP face of the service: the GraphQL endpoint, the dashboard and a health check.

`create_app` builds the ASGI app over one `SemanticLayerService`; `greenery.serve.run` runs it
under uvicorn. The dashboard (`/dashboard`, files in ``static/``) is a client of the GraphQL
API like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from greenery.serve.auth import NOT_AUTHORIZED, bearer_matches, configured_token, host_name, is_loopback
from greenery.serve.catalog import Json
from greenery.serve.graphql import GraphQLApi
from greenery.serve.scheduler import as_client
from greenery.serve.service import QueryJob, SemanticLayerService

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The dashboard loads only its own files and talks only to this server; it never sends its
# URL (which may carry ?token=) to anyone.
DASHBOARD_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}
MAX_BODY_BYTES = 256 * 1024  # a GraphQL request: a few KB in practice
# A poll or a createQuery this small (its where filters checked in well under a millisecond) runs
# on the event loop; anything larger, or anything else, in a thread.
AT_ONCE_BODY_BYTES = 4096
SYNC_WAIT_S = 5.0  # createQuery answers once its query is done, or after this long (then clients poll)
_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s]*", re.I)


class BodyTooLarge(ValueError):
    """A request body over the limit (read no further than the limit)."""


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes (whatever Content-Length says)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _authorized(request: Request, token: str | None) -> bool:
    return token is None or bearer_matches(request.headers.get("authorization", ""), token)


def _client(request: Request) -> str:
    """Who a request's queries are counted against: its connection (see greenery.serve.scheduler)."""
    peer = request.client
    return f"http:{peer.host}:{peer.port}" if peer is not None else "http"


def _execute(api: GraphQLApi, body: Json, client: str) -> tuple[Json, list[QueryJob]]:
    with as_client(client):
        return api.execute(body["query"], body.get("variables"), body.get("operationName"))


async def _all_done(jobs: list[QueryJob], timeout_s: float) -> None:
    """Until every job is done, or `timeout_s` has passed (then the client polls): awaited on the
    event loop, so the thread that started them is free at once and no thread hands the answer back."""
    if not jobs:
        return
    loop = asyncio.get_running_loop()
    waits = []
    for job in jobs:
        done = loop.create_future()
        job.on_done(lambda done=done: _resolve_soon(loop, done))
        waits.append(done)
    await asyncio.wait(waits, timeout=timeout_s)


def _resolve_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    """From the thread that ended a job: resolve its future on the loop (gone at shutdown: nothing to do)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _graphql_error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"data": None, "errors": [{"message": message}]}, status_code=status)


def create_app(warehouse_file: Path | None = None, token: str | None = None) -> Starlette:
    """The ASGI app over the newest published copy of `warehouse_file` (default: $GREENERY_WAREHOUSE).

    `token` overrides ``$GREENERY_API_TOKEN``; with neither, requests are not authenticated.
    """
    token = token or configured_token()
    service = SemanticLayerService(warehouse_file)
    api = GraphQLApi(service)

    async def graphql(request: Request) -> JSONResponse:
        if not _authorized(request, token):
            return _graphql_error(NOT_AUTHORIZED, 401)
        if "text/plain" in request.headers.get("content-type", ""):  # a browser's "simple request"
            return _graphql_error("send the body as application/json", 415)
        try:
            raw = await _body(request, MAX_BODY_BYTES)
            body = json.loads(raw)
        except BodyTooLarge:
            return _graphql_error(f"the request body is larger than {MAX_BODY_BYTES:,} bytes", 413)
        except (ValueError, RecursionError, MemoryError):  # not JSON, or nested deeper than json can read
            return _graphql_error("the request body must be JSON: {query, variables, operationName}", 400)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("query"), str)
            or not isinstance(body.get("variables") or {}, dict)
            or not isinstance(body.get("operationName") or "", str)
        ):
            return _graphql_error(
                "the request body must be a JSON object: query (string), variables (object), operationName",
                400,
            )
        if len(raw) <= AT_ONCE_BODY_BYTES and api.runs_at_once(body["query"], body.get("operationName")):
            answer, started = _execute(api, body, _client(request))  # no thread hand-over: ~0.4 ms less
        else:
            answer, started = await run_in_threadpool(_execute, api, body, _client(request))
        await _all_done(started, SYNC_WAIT_S)
        return JSONResponse(answer)

    async def healthz(request: Request) -> JSONResponse:
        if not _authorized(request, token):
            return JSONResponse({"status": "ok"})  # alive, and nothing more without the token
        return JSONResponse(await run_in_threadpool(service.health))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for stop in app.state.on_shutdown:  # other transports on the service stop before it closes
            await run_in_threadpool(stop)
        await run_in_threadpool(service.close)

    app = Starlette(
        routes=[
            Route("/api/graphql", graphql, methods=["POST"]),
            Route("/", graphql, methods=["POST"]),
            Route("/", _home, methods=["GET"]),
            Route("/dashboard", _dashboard, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.on_shutdown = []
    return app if token is not None else LoopbackHostsOnly(app)  # type: ignore[return-value]


async def _dashboard(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "dashboard.html", headers=DASHBOARD_HEADERS)


async def _home(request: Request) -> Response:
    """Browsers go to the dashboard; API clients get a map of the endpoints."""
    if "text/html" in request.headers.get("accept", ""):
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/dashboard{query}", status_code=303)
    return JSONResponse(
        {"graphql": "/api/graphql (POST; also POST /)", "dashboard": "/dashboard", "health": "/healthz"}
    )


class LoopbackHostsOnly:
    """Without a token, answer only requests addressed to a loopback name (not a DNS-rebound one).

    A web page elsewhere can point its own host name at 127.0.0.1 and make the browser send
    requests here; the Host header still carries that foreign name.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not is_loopback(host_name(host)):
                response = PlainTextResponse("this server answers requests to localhost only", 421)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RedactTokenFilter(logging.Filter):
    """Hides ``?token=…`` (the dashboard's one-time login link) in uvicorn's access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args
            )
        return True
