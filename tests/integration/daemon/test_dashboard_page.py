"""The dashboard in a real browser (docs/dashboard.md): Playwright driving Debian's ``chromium``
(never Playwright's own browser download), against one real daemon for the module.

Screenshots go to ``$TETHER_TEST_ARTIFACTS/dashboard/`` (default ``tests/artifacts/``, ignored by
git). Without chromium or playwright the module is skipped, saying why; in CI (``CI=true``,
``.ci/run`` installs chromium) it fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import records_code

import tether as rh

IN_CI = os.environ.get("CI", "") not in ("", "0", "false")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TETHER_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "artifacts")
DASH = "/_tether/dashboard/"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (it is in the dev extra: make venv)"
    if not os.access(CHROMIUM, os.X_OK):
        return "Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it in CI)"
    return None


@pytest.fixture(scope="module")
def dash():
    """One daemon with three services, for the whole module."""
    cluster = rh.cluster(name=f"dash-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    try:
        services = {name: rh.function(getattr(records_code, name)).to(cluster, name=name)
                    for name in ("chatty", "fail", "slow_printer")}
        services["chatty"](2)
        yield cluster, services
    finally:
        cluster.teardown()


@pytest.fixture(scope="module")
def browser():
    reason = _missing()
    if reason:
        if IN_CI:
            pytest.fail(f"CI must run the dashboard's browser tests, but: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _shot(page, name: str) -> Path:
    path = ARTIFACTS / "dashboard" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def test_nothing_is_readable_without_the_token(dash):
    cluster, _ = dash
    url = cluster.client.url
    with httpx.Client(base_url=url, timeout=10, follow_redirects=False) as h:
        for path in ("/_tether/status", "/_tether/keys", "/_tether/calls", "/_tether/usage",
                     "/_tether/events", "/_tether/nodes", "/chatty"):
            assert h.get(path).status_code == 401, path
        page = h.get(DASH)
        assert page.status_code == 303 and page.headers["location"] == "/_tether/dashboard/login"
        login = h.get("/_tether/dashboard/login")
        assert login.status_code == 200 and 'name="token"' in login.text
        assert "chatty" not in login.text and cluster.name not in login.text
        assert "default-src 'none'" in login.headers["content-security-policy"]
        assert h.post("/_tether/dashboard/login", json={"token": "wrong"}).status_code == 401
        ok = h.post("/_tether/dashboard/login", json={"token": cluster.client.token})
        assert ok.status_code == 204
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/_tether" in cookie
        assert cluster.client.token not in cookie
        # the session reads, never writes, and never reaches the call path
        assert h.get("/_tether/keys").status_code == 200
        assert h.post("/_tether/events", json={"kind": "note", "message": "x"}).status_code == 401
        assert h.get("/chatty").status_code == 401
        assert h.post("/_tether/dashboard/logout").status_code == 204
        assert h.get("/_tether/keys").status_code == 401


def test_the_page_shows_services_live_calls_output_and_charts(dash, browser):
    cluster, services = dash
    url, token = cluster.client.url, cluster.client.token
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    try:
        # the fragment logs in (through the login page's redirect) and is gone from the URL
        page.goto(f"{url}{DASH}#token={token}")
        page.wait_for_url(f"{url}{DASH}")
        assert "token" not in page.url
        cookie = next(c for c in context.cookies() if c["name"].startswith("tether_"))
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != token
        page.locator("#cluster", has_text=cluster.name).wait_for()
        page.locator('#services tr[data-service="slow_printer"]').wait_for()
        page.locator("#live", has_text="live").wait_for()

        # a failed call appears live, in its error colour
        with pytest.raises(ValueError):
            services["fail"]("dash-boom")
        failed = page.locator("#calls tr.outcome-error", has_text="dash-boom")
        failed.wait_for()
        colour = failed.locator(".badge").evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(207, 34, 46)"

        # a call that prints slowly: its row shows up running, and its output streams live
        done = threading.Event()
        threading.Thread(target=lambda: (services["slow_printer"](8, 0.3), done.set()), daemon=True).start()
        running = page.locator("#calls tr.outcome-running", has_text="slow_printer")
        running.click()
        page.locator("#output", has_text="tick 1").wait_for()
        assert not done.is_set(), "the output should stream while the call runs"
        page.locator("#output-state", has_text="ok").wait_for(timeout=15000)
        assert page.locator("#output").inner_text().count("tick") == 8

        # the caller's ladder climb, on the timeline
        cluster.client.request_json("POST", "/_tether/events",
                                    body={"kind": "climb", "message": "chatty: from rung 1 to rung 2"})
        page.locator("#events li.kind-climb", has_text="rung 2").wait_for()
        page.locator("#timeline rect.kind-climb").first.wait_for()
        page.locator("#events li.kind-worker_started").first.wait_for()

        # the worker's memory over time
        page.wait_for_function("""() => {
            const line = document.querySelector('#workers svg.spark-mem polyline');
            return line && line.getAttribute('points').split(' ').length >= 2; }""", timeout=10000)

        # filters: only failed calls
        page.select_option("#filter-outcome", "failed")
        page.locator("#calls tbody tr.outcome-ok").first.wait_for(state="detached")
        # the table is rebuilt from the filtered listing: wait for its rows before counting
        page.locator("#calls tbody tr.outcome-error").first.wait_for()
        assert page.locator("#calls tbody tr").count() == page.locator("#calls tbody tr.outcome-error").count() >= 1
        page.select_option("#filter-outcome", "")
        page.locator("#calls tbody tr.outcome-ok").first.wait_for()
        page.locator(f'#calls tr[data-call] >> text="{records_code.slow_printer.__name__}"').first.click()
        page.locator("#output-state", has_text="ok").wait_for()

        # recording paused (tether calls --pause) is said in the overview, with how to resume
        cluster.client.request_json("PUT", "/_tether/records", body={"enabled": False})
        try:
            page.locator("#overview", has_text="paused (tether calls --resume)").wait_for(timeout=15000)
        finally:
            cluster.client.request_json("PUT", "/_tether/records", body={"enabled": True})
        page.locator("#overview", has_text="paused").wait_for(state="detached", timeout=15000)
        _shot(page, "dashboard")
    finally:
        context.close()
    leaked = [u for u in requested if token in u]
    assert not leaked, f"the token went into a request URL: {leaked}"
    assert any("/_tether/calls?follow=1" in u for u in requested)
    log = Path(cluster.status()["state_dir"]) / "daemon.log"
    assert token not in log.read_text(errors="replace")


def test_the_login_form(dash, browser):
    cluster, _ = dash
    url = cluster.client.url
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{url}{DASH}")
        page.wait_for_url(re.compile(r".*/_tether/dashboard/login$"))
        page.fill("#token", "not-the-token")
        page.click("button[type=submit]")
        page.locator("#error", has_text="wrong token").wait_for()
        _shot(page, "login")
        page.fill("#token", cluster.client.token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}{DASH}")
        page.locator('#services tr[data-service="chatty"]').wait_for()
        page.click("#logout button")
        page.wait_for_url(re.compile(r".*/_tether/dashboard/login$"))
    finally:
        context.close()


def test_worker_deaths_are_events(dash):
    cluster, services = dash
    pid = cluster.status()["envs"]["default"]["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        got = cluster.client.request_json("GET", "/_tether/events", params={"kind": "worker_died"})["events"]
        if any(e["pid"] == pid for e in got):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("no worker_died event")
    (event,) = [e for e in got if e["pid"] == pid]
    assert event["signal"] == "SIGKILL" and event["env"] == "default"
    services["chatty"](1)  # a fresh worker serves the next call


def test_a_token_rotation_ends_every_session(dash):
    cluster, services = dash
    with httpx.Client(base_url=cluster.client.url, timeout=10) as h:
        assert h.post("/_tether/dashboard/login", json={"token": cluster.client.token}).status_code == 204
        assert h.get("/_tether/keys").status_code == 200
        cluster.rotate_token()
        assert h.get("/_tether/keys").status_code == 401
        assert h.post("/_tether/dashboard/login", json={"token": cluster.client.token}).status_code == 204
        assert h.get("/_tether/keys").status_code == 200
    assert services["chatty"](1) == 1
