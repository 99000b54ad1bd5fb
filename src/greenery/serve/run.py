"""`greenery serve`: the HTTP app and, when asked, Arrow Flight SQL and Postgres on one query service."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys

import uvicorn
from pyarrow.lib import ArrowException

from greenery.serve.auth import TOKEN_ENV, bind_refusal, configured_token, netloc
from greenery.serve.connections import GuardedConfig, raise_open_file_limit
from greenery.serve.flight import SemanticLayerFlightServer, flight_location, start_flight_server
from greenery.serve.http import RedactTokenFilter, create_app
from greenery.serve.postgres import PostgresServer, start_postgres_server
from greenery.serve.service import SemanticLayerService, ServerConfigError


def dbt_mcp_recipe(host: str, port: int, flight_port: int | None) -> str:
    """The environment for dbt-mcp (dbt Labs' MCP server for AI agents) to use this server.

    dbt-mcp treats a DBT_HOST starting with "localhost" as local: plain HTTP, GraphQL posted
    to ``/``. The token is named, never printed.
    """
    lines = [
        "DBT_MCP_ENABLE_SEMANTIC_LAYER=true",
        f"DBT_HOST=localhost:{port}",
        "DBT_PROD_ENV_ID=1",
        f"DBT_TOKEN=${TOKEN_ENV}",
        "DBT_SL_GRAPHQL_URL_FORMAT=http://{server_host}/api/graphql",
    ]
    if flight_port is not None:
        lines.append(f"DBT_SL_ADBC_URL_FORMAT={flight_location(host, flight_port)}")
    return "\n".join(lines)


def serve(
    host: str, port: int, flight_port: int | None, pg_port: int | None = None, *, access_log: bool = False
) -> None:
    """Run the API under uvicorn until interrupted (the CLI's `greenery serve`).

    The query log has a line per query; `access_log` adds uvicorn's line per HTTP request (a
    GraphQL query is two or more: create, then polls), which costs about 0.3 ms a request.
    A port that cannot be served is a ServerConfigError naming it; what had started stops.
    """
    token = configured_token()
    if refusal := bind_refusal(host, token):
        raise ServerConfigError(refusal)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # one line per query; MetricFlow's own INFO logs are too chatty
    logging.getLogger("greenery.serve").setLevel(logging.INFO)
    with contextlib.ExitStack() as started:  # stopped if a later step fails; then by the app
        http_socket = started.enter_context(_listening(host, port, "HTTP"))  # before the layer loads
        port = http_socket.getsockname()[1]
        app = create_app(token=token)
        service: SemanticLayerService = app.state.service
        started.callback(service.close)
        print(f"greenery serve: published version {service.layers.version} of {service.warehouse_file}")
        print(f"greenery serve: GraphQL at http://{netloc(host, port)}/api/graphql, health at /healthz")
        print(f"greenery serve: dashboard at http://{netloc(host, port)}/dashboard")
        if token is None:
            print(f"greenery serve: UNAUTHENTICATED ({TOKEN_ENV} is not set): loopback only", file=sys.stderr)
        raise_open_file_limit()  # room for the connection caps (see greenery.serve.connections)
        flight, postgres = None, None
        if flight_port is not None:
            flight = _start_flight(service, host, flight_port, token)
            started.callback(flight.shutdown)
            print(f"greenery serve: Arrow Flight SQL at {flight_location(host, flight.port)}", flush=True)
        if pg_port is not None:
            postgres = _start_postgres(service, host, pg_port, token)
            started.callback(postgres.shutdown)
            print(
                f"greenery serve: Postgres at postgresql://{netloc(host, postgres.port)}/greenery "
                f"(any user; password: ${TOKEN_ENV})",
                flush=True,
            )
        app.state.on_shutdown.extend(server.shutdown for server in (flight, postgres) if server is not None)
        started.pop_all()  # from here the app's shutdown stops them, and uvicorn closes the socket
    print("greenery serve: for AI agents, run dbt-mcp with (see docs/serving.md):")
    for line in dbt_mcp_recipe(host, port, flight.port if flight is not None else None).splitlines():
        print(f"    {line}")
    # configures logging (uvicorn's loggers included)
    config = GuardedConfig(app, host=host, port=port, log_level="info", access_log=access_log)
    logging.getLogger("uvicorn.access").addFilter(RedactTokenFilter())
    uvicorn.Server(config).run(sockets=[http_socket])


def _listening(host: str, port: int, protocol: str) -> socket.socket:
    """A socket bound and listening on host:port (a port in use is a ServerConfigError)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise _cannot_serve(protocol, host, port, exc) from exc


def _cannot_serve(protocol: str, host: str, port: int, exc: OSError) -> ServerConfigError:
    # the system's words for its errno (create_server adds the address to strerror); a name
    # lookup's error (socket.gaierror, a negative errno) has its own strerror
    reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
    return ServerConfigError(f"cannot serve {protocol} on {netloc(host, port)}: {reason}")


def _start_flight(
    service: SemanticLayerService, host: str, port: int, token: str | None
) -> SemanticLayerFlightServer:
    """The Flight SQL server on the same service and token, listening."""
    if port:  # gRPC says only "Server did not start properly" (and logs its own line) otherwise
        _listening(host, port, "Arrow Flight SQL").close()
    try:
        return start_flight_server(service, host, port, token)
    except (ArrowException, OSError) as exc:
        raise ServerConfigError(f"cannot serve Arrow Flight SQL on {netloc(host, port)}: {exc}") from exc


def _start_postgres(service: SemanticLayerService, host: str, port: int, token: str | None) -> PostgresServer:
    """The Postgres endpoint on the same service and token, listening."""
    try:
        return start_postgres_server(service, host, port, token)
    except OSError as exc:
        raise _cannot_serve("Postgres", host, port, exc) from exc
