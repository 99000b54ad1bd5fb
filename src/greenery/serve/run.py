"""`greenery serve`: the HTTP app and, when asked, Arrow Flight SQL and Postgres on one query service."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pyarrow.lib import ArrowException

from greenery.serve.auth import TOKEN_ENV, bind_refusal, configured_token
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
    """
    token = configured_token()
    if refusal := bind_refusal(host, token):
        raise ServerConfigError(refusal)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # one line per query; MetricFlow's own INFO logs are too chatty
    logging.getLogger("greenery.serve").setLevel(logging.INFO)
    app = create_app(token=token)
    service: SemanticLayerService = app.state.service
    print(f"greenery serve: published version {service.layers.version} of {service.warehouse_file}")
    print(f"greenery serve: GraphQL at http://{host}:{port}/api/graphql, health at /healthz")
    print(f"greenery serve: dashboard at http://{host}:{port}/dashboard")
    if token is None:
        print(f"greenery serve: UNAUTHENTICATED ({TOKEN_ENV} is not set): loopback only", file=sys.stderr)
    raise_open_file_limit()  # room for the connection caps (see greenery.serve.connections)
    # configures logging (uvicorn's loggers included)
    config = GuardedConfig(app, host=host, port=port, log_level="info", access_log=access_log)
    logging.getLogger("uvicorn.access").addFilter(RedactTokenFilter())
    flight = None
    if flight_port is not None:
        flight = _start_flight(service, host, flight_port, token)
        app.state.on_shutdown.append(flight.shutdown)
        print(f"greenery serve: Arrow Flight SQL at {flight_location(host, flight.port)}", flush=True)
    if pg_port is not None:
        postgres = _start_postgres(service, host, pg_port, token)
        app.state.on_shutdown.append(postgres.shutdown)
        print(
            f"greenery serve: Postgres at postgresql://{host}:{postgres.port}/greenery "
            f"(any user; password: ${TOKEN_ENV})",
            flush=True,
        )
    print("greenery serve: for AI agents, run dbt-mcp with (see docs/serving.md):")
    for line in dbt_mcp_recipe(host, port, flight.port if flight is not None else None).splitlines():
        print(f"    {line}")
    uvicorn.Server(config).run()


def _start_flight(
    service: SemanticLayerService, host: str, port: int, token: str | None
) -> SemanticLayerFlightServer:
    """The Flight SQL server on the same service and token, listening."""
    try:
        return start_flight_server(service, host, port, token)
    except (ArrowException, OSError) as exc:
        raise ServerConfigError(f"cannot serve Arrow Flight SQL on {host}:{port}: {exc}") from exc


def _start_postgres(service: SemanticLayerService, host: str, port: int, token: str | None) -> PostgresServer:
    """The Postgres endpoint on the same service and token, listening."""
    try:
        return start_postgres_server(service, host, port, token)
    except OSError as exc:
        raise ServerConfigError(f"cannot serve Postgres on {host}:{port}: {exc}") from exc
