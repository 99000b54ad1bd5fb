"""The dashboard at /dashboard, loaded by headless Chromium from the test server.

Chromium is Debian's `chromium` package; the set-up installs it with apt-get when it is
missing (and skips, saying why, only when that is impossible). The page is a real client of
the server's GraphQL API; the test waits for its charts, checks the course funnel
578 / 467 / 361 in the rendered DOM, and saves a screenshot (printed path, in output/).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from conftest import TOKEN, publish_copy, running
from greenery.cli import build_parser
from greenery.serve.http import STATIC_DIR, create_app

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "output" / "dashboard.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1360,3400",
]
VIRTUAL_TIME_MS = 30_000  # virtual time runs fast; pending fetches pause it


# ---- fixtures ------------------------------------------------------------------------------


def _install_chromium() -> str:
    """Debian's chromium via apt-get (as root); the reason it cannot be had otherwise."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available on this machine"
    if os.geteuid() != 0:
        return "installing it needs root (apt-get install -y chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return ""


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        reason = _install_chromium()
        found = shutil.which("chromium")
        if found is None:
            pytest.skip(f"headless Chromium is needed and could not be installed: {reason or 'not on PATH'}")
    return found


@pytest.fixture(scope="module")
def host(course_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    copy = publish_copy(course_warehouse, tmp_path_factory.mktemp("dashboard") / "warehouse")
    with running(create_app(copy, token=TOKEN)) as served:
        yield served


def browse(chromium: str, url: str, profile: Path, *, screenshot: Path | None = None) -> str:
    """The DOM after the page's scripts ran (and a screenshot when asked)."""
    output = f"--screenshot={screenshot}" if screenshot else "--dump-dom"
    budget = f"--virtual-time-budget={VIRTUAL_TIME_MS}"
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", budget, output, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def body_state(dom: str) -> str | None:
    match = re.search(r'<body[^>]*data-state="([a-z]+)"', dom)
    return match.group(1) if match else None


# ---- the page in a browser --------------------------------------------------------------------


def test_dashboard_shows_the_course_funnel(
    chromium: str, host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dom = browse(chromium, f"http://{host}/dashboard?token={TOKEN}", tmp_path / "profile")
    assert body_state(dom) == "ready", dom[-3000:]
    kpis = dict(re.findall(r'data-metric="([a-z_]+)">([^<]*)<', dom))
    assert kpis == {
        "sessions_with_page_view": "578",
        "sessions_with_add_to_cart": "467",
        "sessions_with_checkout": "361",
        "view_to_checkout_rate": "62.5%",
    }
    steps = re.findall(r'data-step="([a-z_]+)"[^>]*>([^<]*)<', dom)
    assert steps == [
        ("sessions_with_page_view", "578"),
        ("sessions_with_add_to_cart", "467"),
        ("sessions_with_checkout", "361"),
    ]
    assert "80.8% continue" in dom and "77.3% continue" in dom  # step conversion
    assert "−111 sessions" in dom and "−106 sessions" in dom  # drop-off
    assert "String of pearls" in dom  # product ranking (the best converter, first)
    assert "Returning · repeat" in dom  # segments
    assert "2 of 30 products ran out of stock" in dom  # inventory with stockouts
    assert "No anomaly found in the raw data (10 kinds checked)." in dom  # data quality
    assert dom.count("data-anomaly=") == 10
    assert "Could not load" not in dom
    assert re.search(r'id="version"[^>]*>published v\d+<', dom)  # /healthz answered with the token
    assert TOKEN not in dom  # taken from the URL into sessionStorage, then removed

    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    browse(chromium, f"http://{host}/dashboard?token={TOKEN}", tmp_path / "shot", screenshot=SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 50_000
    with capsys.disabled():
        print(f"\n    dashboard screenshot: {SCREENSHOT}")


def test_week_view_with_the_token_in_the_fragment(chromium: str, host: str, tmp_path: Path) -> None:
    """#token=… works too (it never reaches a server log); ?grain=week opens the weekly funnel."""
    dom = browse(chromium, f"http://{host}/dashboard?grain=week#token={TOKEN}", tmp_path / "profile")
    assert body_state(dom) == "ready"
    assert '<button type="button" data-grain="week" aria-pressed="true">' in dom
    assert "Week of Feb 8" in dom
    day = browse(chromium, f"http://{host}/dashboard#token={TOKEN}", tmp_path / "profile2")
    assert '<button type="button" data-grain="day" aria-pressed="true">' in day  # the default
    assert "<td>Feb 10</td>" in day and "<td>Feb 10</td>" not in dom


def test_without_a_token_the_dashboard_asks_for_one(chromium: str, host: str, tmp_path: Path) -> None:
    dom = browse(chromium, f"http://{host}/dashboard", tmp_path / "profile")
    assert body_state(dom) == "login"
    assert re.search(r'<section id="login" class="login">', dom)  # no longer hidden
    wrong = browse(chromium, f"http://{host}/dashboard?token=wrong", tmp_path / "profile2")
    assert body_state(wrong) == "login"
    assert "That token was not accepted." in wrong


# ---- the HTTP side ----------------------------------------------------------------------------


def test_browsers_are_sent_to_the_dashboard_while_post_stays_graphql(host: str) -> None:
    browser = requests.get(f"http://{host}/", headers={"Accept": "text/html"}, allow_redirects=False)
    assert (browser.status_code, browser.headers["location"]) == (303, "/dashboard")
    api = requests.get(f"http://{host}/")
    assert api.json()["dashboard"] == "/dashboard"
    graphql = requests.post(
        f"http://{host}/",
        json={"query": "{ environmentInfo(environmentId: 1) { dialect } }"},
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    assert graphql.json()["data"]["environmentInfo"]["dialect"] == "DUCKDB"


def test_the_page_is_self_contained_and_carries_no_token(host: str) -> None:
    page = requests.get(f"http://{host}/dashboard?token={TOKEN}")
    assert page.ok and page.headers["content-type"].startswith("text/html")
    assert TOKEN not in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    for name in ("dashboard.html", "dashboard.js", "dashboard.css", "favicon.svg"):
        text = (STATIC_DIR / name).read_text()
        assert requests.get(f"http://{host}/static/{name}").text == text
        external = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not external, f"{name} loads from outside: {external}"


def test_the_exposure_points_at_the_dashboard_on_the_default_port() -> None:
    exposures = yaml.safe_load((REPO / "models" / "marts" / "_exposures.yml").read_text())["exposures"]
    (dashboard,) = [e for e in exposures if e["name"] == "product_funnel_dashboard"]
    port = build_parser().parse_args(["serve"]).port
    assert dashboard["url"] == f"http://127.0.0.1:{port}/dashboard"
