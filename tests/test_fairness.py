"""Fair queueing: no client can hold every worker, and a light client stays fast beside heavy ones.

The scheduler is tested on its own with jobs that wait for a signal (exact counts, no timing),
then through the HTTP server: four clients send the heaviest queries the bounds allow, each
different so no cache helps, while a fifth asks for `funnel_overall` again and again.
"""

from __future__ import annotations

import itertools
import secrets
import statistics
import threading
import time
from collections.abc import Callable

import pytest
import requests

from conftest import TOKEN, Served
from greenery.serve import service
from greenery.serve.scheduler import FairScheduler, QueueFull, as_client, current_client
from greenery.serve.service import QueryRequest

HEAVY_SECONDS = 12.0  # how long the heavy clients keep sending while the light one measures
STATES = 85  # values in each heavy filter: 20 filters stay just under 20,000 characters together
_tags = itertools.count(secrets.randbelow(1 << 15))


def blocking_job(release: threading.Event, log: list[str], name: str) -> Callable[[], None]:
    def job() -> None:
        log.append(name)
        release.wait(10)

    return job


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_one_client_never_holds_every_worker_and_others_go_first() -> None:
    scheduler = FairScheduler(3, queued_per_client=5)
    release, started = threading.Event(), []
    try:
        for i in range(5):
            scheduler.submit(blocking_job(release, started, f"greedy{i}"), "greedy")
        wait_until(lambda: len(started) == 2)
        time.sleep(0.1)  # a third worker is free, but not for the greedy client
        assert started == ["greedy0", "greedy1"] and scheduler.queued("greedy") == 3
        scheduler.submit(blocking_job(release, started, "polite"), "polite")
        wait_until(lambda: len(started) == 3)
        assert started[-1] == "polite"  # the free worker went to the newcomer at once
        assert scheduler.running("greedy") == 2 and scheduler.running("polite") == 1
        release.set()
        wait_until(lambda: len(started) == 6)  # the waiting ones ran once workers were free
    finally:
        release.set()
        scheduler.shutdown()
    assert sorted(started) == ["greedy0", "greedy1", "greedy2", "greedy3", "greedy4", "polite"]


def test_turns_alternate_between_waiting_clients() -> None:
    scheduler = FairScheduler(2)
    gate, order = threading.Event(), []
    try:
        scheduler.submit(blocking_job(gate, order, "hold"), "holder")  # one worker busy till the gate opens
        wait_until(lambda: order == ["hold"])
        blocker = threading.Event()
        scheduler.submit(blocking_job(blocker, order, "b0"), "b")  # the second worker, blocked
        wait_until(lambda: len(order) == 2)
        for i in range(3):
            scheduler.submit(lambda i=i: order.append(f"a{i}"), "a")
            scheduler.submit(lambda i=i: order.append(f"b{i + 1}"), "b")
        blocker.set()  # one worker now serves the queues: b is capped at 1 running, so turns alternate
        wait_until(lambda: len(order) == 8)
        assert order[2:] == ["a0", "b1", "a1", "b2", "a2", "b3"]
    finally:
        gate.set()
        scheduler.shutdown()


def test_large_jobs_leave_one_worker_to_ordinary_ones() -> None:
    scheduler = FairScheduler(3)
    release, started = threading.Event(), []
    try:
        for client in ("h1", "h2", "h3"):
            scheduler.submit(blocking_job(release, started, client), client, large=True)
        wait_until(lambda: len(started) == 2)
        time.sleep(0.1)
        assert len(started) == 2  # the third large job waits although a worker is free …
        scheduler.submit(blocking_job(release, started, "small"), "s")
        wait_until(lambda: len(started) == 3)
        assert started[-1] == "small"  # … which an ordinary query gets at once
        release.set()
        wait_until(lambda: len(started) == 4)
    finally:
        release.set()
        scheduler.shutdown()


def test_a_request_with_long_filters_or_many_items_is_large() -> None:
    assert not QueryRequest(saved_query="funnel_overall").large
    assert QueryRequest(metrics=("sessions",), where=tuple(f["sql"] for f in heaviest_filters())).large
    assert QueryRequest(metrics=tuple(f"m{i}" for i in range(service.LARGE_REQUEST_ITEMS))).large


def test_a_client_with_too_many_queued_queries_is_refused_by_name() -> None:
    scheduler = FairScheduler(2, queued_per_client=2)
    release, started = threading.Event(), []
    try:
        scheduler.submit(blocking_job(release, started, "run"), "c")
        wait_until(lambda: started == ["run"])
        scheduler.submit(blocking_job(release, started, "q1"), "c")
        scheduler.submit(blocking_job(release, started, "q2"), "c")
        with pytest.raises(QueueFull, match=r"too many queued queries: this client already has 2 waiting"):
            scheduler.submit(blocking_job(release, started, "q3"), "c")
        scheduler.submit(blocking_job(release, started, "other"), "d")  # others are not affected
        release.set()
        wait_until(lambda: len(started) == 4)
    finally:
        release.set()
        scheduler.shutdown()
    assert sorted(started) == ["other", "q1", "q2", "run"]


def test_a_caller_runs_its_job_itself_only_where_a_worker_would() -> None:
    scheduler = FairScheduler(3)
    release, started, ran = threading.Event(), [], []
    try:
        here = threading.current_thread()
        assert scheduler.run_here(lambda: ran.append(threading.current_thread()), "c")
        assert ran == [here] and scheduler.running("c") == 0  # its place is given back
        scheduler.submit(blocking_job(release, started, "w0"), "c")
        scheduler.submit(blocking_job(release, started, "w1"), "c")
        wait_until(lambda: len(started) == 2)
        assert not scheduler.run_here(lambda: ran.append("c again"), "c")  # c is at its cap (2 of 3)
        held, inline_started = threading.Event(), threading.Event()

        def hold() -> None:
            inline_started.set()
            held.wait(10)

        caller = threading.Thread(target=lambda: scheduler.run_here(hold, "d"))
        caller.start()
        inline_started.wait(5)
        assert scheduler.running("d") == 1  # the third place, taken by the caller
        scheduler.submit(blocking_job(release, started, "e0"), "e")  # every place taken: e waits …
        assert not scheduler.run_here(lambda: ran.append("e"), "e")
        time.sleep(0.2)
        assert started == ["w0", "w1"] and scheduler.queued("e") == 1
        held.set()  # … until the caller gives its place back
        caller.join(5)
        wait_until(lambda: started == ["w0", "w1", "e0"])
    finally:
        release.set()
        held.set()
        scheduler.shutdown()
    assert ran == [here]


def test_the_client_is_set_per_request() -> None:
    assert current_client() == "local"
    with as_client("http:127.0.0.1:5000"):
        assert current_client() == "http:127.0.0.1:5000"
    assert current_client() == "local"


# ---- through the server ----------------------------------------------------------------------


POLL = "query Q($id: String!) { query(environmentId: 1, queryId: $id) { status error } }"


def graphql(session: requests.Session, served: Served, query: str, variables: dict | None = None) -> dict:
    answer = session.post(
        f"http://{served.http_host}/api/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=120,
    )
    answer.raise_for_status()
    return answer.json()


def run_query(session: requests.Session, served: Served, create: str, variables: dict | None = None) -> str:
    """Create a query and poll it to the end, as dbt's clients do; its final status (or error)."""
    created = graphql(session, served, create, variables)
    query_id = created["data"]["createQuery"]["queryId"]
    while True:
        polled = graphql(session, served, POLL, {"id": query_id})["data"]["query"]
        if polled["status"] in ("SUCCESSFUL", "FAILED"):
            return polled["status"] if polled["error"] is None else polled["error"]
        time.sleep(0.05)


HEAVY = """mutation H($where: [WhereInput!]) { createQuery(environmentId: 1,
  metrics: [{name: "sessions"}, {name: "sessions_with_checkout"},
            {name: "session_view_to_checkout_conversion"}, {name: "user_view_to_checkout_conversion_7d"}],
  groupBy: [{name: "metric_time", grain: DAY}, {name: "user__state"}], where: $where) { queryId } }"""
FUNNEL = 'mutation { createQuery(environmentId: 1, savedQuery: "funnel_overall") { queryId } }'


def heaviest_filters() -> list[dict[str, str]]:
    """20 filters, together just under the 20,000-character bound, never seen before (no cache)."""
    tag = f"{next(_tags) % (1 << 16):04x}"
    filters = []
    for i in range(service.MAX_FILTERS):
        values = ",".join(f"'{tag}{i:02d}{k:02d}'" for k in range(STATES))
        filters.append({"sql": "{{ Dimension('user__state') }} not in (" + values + ")"})
    assert sum(len(f["sql"]) for f in filters) <= service.MAX_FILTER_TEXT
    return filters


@pytest.mark.serial  # a latency: measured with no other test's dbt on the cores (make test)
def test_a_light_client_stays_fast_while_four_send_the_heaviest_queries(served: Served) -> None:
    stop = threading.Event()
    heavy_results: list[str] = []

    def heavy_client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    heavy_results.append(run_query(session, served, HEAVY, {"where": heaviest_filters()}))
                except Exception as exc:  # reported by the assertion below
                    heavy_results.append(repr(exc)[:300])

    light = requests.Session()
    assert run_query(light, served, FUNNEL) == "SUCCESSFUL"  # computed once, then from the cache
    threads = [threading.Thread(target=heavy_client, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every worker is busy with heavy queries by now
    latencies, statuses = [], []
    deadline = time.monotonic() + HEAVY_SECONDS
    while time.monotonic() < deadline:
        start = time.perf_counter()
        statuses.append(run_query(light, served, FUNNEL))
        latencies.append(time.perf_counter() - start)
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    light.close()
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[-1]
    print(
        f"\nfunnel_overall beside 4 heavy clients: {len(latencies)} queries, p50 {p50 * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
        f"{len(heavy_results)} heavy queries answered meanwhile"
    )
    assert set(statuses) == {"SUCCESSFUL"}
    assert heavy_results and set(heavy_results) == {"SUCCESSFUL"}, set(heavy_results)
    assert len(latencies) >= 20
    assert p95 < 1.0
