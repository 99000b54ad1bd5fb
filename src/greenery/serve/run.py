"""`greenery serve`: the HTTP app and, when asked, Arrow Flight SQL on one query service."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pyarrow.lib import ArrowException

from greenery.serve.auth import TOKEN_ENV, configured_token, is_loopback
from greenery.serve.flight import SemanticLayerFlightServer, flight_location, start_flight_server
from greenery.serve.http import RedactTokenFilter, create_app
from greenery.serve.service import SemanticLayerService, ServerConfigError


def serve(host: str, port: int, flight_port: int | None) -> None:
    """Run the API under uvicorn until interrupted (the CLI's `greenery serve`)."""
    token = configured_token()
    if token is None and not is_loopback(host):
        raise ServerConfigError(
            f"refusing to serve on {host} without authentication: set {TOKEN_ENV} to a secret token, "
            "or bind to loopback (--host 127.0.0.1)"
        )
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
    config = uvicorn.Config(app, host=host, port=port, log_level="info")  # configures logging
    logging.getLogger("uvicorn.access").addFilter(RedactTokenFilter())
    if flight_port is not None:
        flight = _start_flight(service, host, flight_port, token)
        app.state.on_shutdown.append(flight.shutdown)
        print(f"greenery serve: Arrow Flight SQL at {flight_location(host, flight.port)}", flush=True)
    uvicorn.Server(config).run()


def _start_flight(
    service: SemanticLayerService, host: str, port: int, token: str | None
) -> SemanticLayerFlightServer:
    """The Flight SQL server on the same service and token, listening."""
    try:
        return start_flight_server(service, host, port, token)
    except (ArrowException, OSError) as exc:
        raise ServerConfigError(f"cannot serve Arrow Flight SQL on {host}:{port}: {exc}") from exc
