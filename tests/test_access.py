"""Who gets in: long tokens off loopback, one auth header, loopback names only without a token,
a health check that says nothing to strangers, log lines nobody can forge."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow.flight as flight
import pytest
import requests

from conftest import TOKEN, Served, running
from greenery.serve import service
from greenery.serve.auth import MIN_TOKEN_CHARS, TOKEN_ENV, bind_refusal, host_name
from greenery.serve.flight import pack_any
from greenery.serve.http import create_app
from greenery.serve.run import serve

CATALOGS = flight.FlightDescriptor.for_command(pack_any("CommandGetCatalogs", b""))


def test_a_short_token_refuses_a_public_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "short-secret")
    with pytest.raises(service.ServerConfigError, match=f"token shorter than {MIN_TOKEN_CHARS} characters"):
        serve("0.0.0.0", 0, None)
    assert bind_refusal("127.0.0.1", "short") is None  # loopback: the operator's own machine
    assert bind_refusal("0.0.0.0", "x" * MIN_TOKEN_CHARS) is None


def test_flight_refuses_two_authorization_headers(served: Served) -> None:
    client = flight.connect(served.flight_uri)
    both = flight.FlightCallOptions(
        headers=[(b"authorization", b"Bearer wrong"), (b"authorization", f"Bearer {TOKEN}".encode())]
    )
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(CATALOGS, both)
    one = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
    assert client.get_flight_info(CATALOGS, one).total_records == 0
    client.close()


def test_health_says_nothing_without_the_token(served: Served) -> None:
    stranger = requests.get(f"http://{served.http_host}/healthz", timeout=30)
    assert stranger.status_code == 200 and stranger.json() == {"status": "ok"}
    insider = requests.get(
        f"http://{served.http_host}/healthz", headers={"authorization": f"Bearer {TOKEN}"}, timeout=30
    ).json()
    assert insider["status"] == "ok" and insider["metrics"] > 0 and insider["published_version"]


@pytest.fixture(scope="module")
def open_host(course_copy: Path) -> Iterator[str]:
    """An unauthenticated server (no token) on loopback."""
    with running(create_app(course_copy, token="")) as host:
        yield host


def test_without_a_token_only_loopback_names_are_answered(open_host: str) -> None:
    port = open_host.rpartition(":")[2]
    query = {"query": "{ environmentInfo(environmentId: 1) { dialect } }"}
    for name in (f"127.0.0.1:{port}", f"localhost:{port}"):
        answer = requests.post(
            f"http://{open_host}/api/graphql", json=query, headers={"host": name}, timeout=30
        )
        assert answer.json()["data"]["environmentInfo"]["dialect"] == "DUCKDB"
    rebound = requests.post(
        f"http://{open_host}/api/graphql", json=query, headers={"host": f"evil.example:{port}"}, timeout=30
    )
    assert rebound.status_code == 421
    assert host_name("[::1]:8000") == "::1" and host_name("localhost") == "localhost"


def test_a_name_with_a_newline_cannot_forge_a_log_line(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="greenery.serve")
    forged = "sessions\\n2026-01-01 INFO greenery.serve: createQuery 0 SUCCESSFUL"
    metric = f'metrics: [{{name: "{forged}"}}]'
    requests.post(
        f"http://{served.http_host}/api/graphql",
        json={"query": f"mutation {{ createQuery(environmentId: 1, {metric}) {{ queryId }} }}"},
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "greenery.serve"]
    assert lines and all("\n" not in line for line in lines)
    assert any("\\n2026-01-01" in line for line in lines)
