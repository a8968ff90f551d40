"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright),
against the real app: `manage.py serve` in a child process, its members two fake
llama.cpp servers added as remote members, so no model loads and the test stays light."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request

import pytest

from testing.fake_member import FakeMemberProcess
from tests.browser_kit import BROWSER, App, read_or_empty
from tests.helpers import ARTIFACTS, manage, wait_until

pytestmark = BROWSER


@pytest.fixture
def app(tmp_path):
    """The app with two ready remote members (fake llama.cpp servers) and an API key."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    model = tmp_path / "stand-in.gguf"  # remote members never load it; only its name is served
    model.write_bytes(b"GGUF" + bytes(64))
    env = {"VIBEADMIN_MODEL": str(model)}
    fakes = [FakeMemberProcess(name=f"fake{i}", ttft=0.05, tpt=0.01, max_tokens=16).start() for i in (1, 2)]
    app = None
    try:
        assert manage("migrate", "--noinput", "-v", "0", data_dir=data_dir, **env).returncode == 0
        for i, fake in enumerate(fakes, 1):
            result = manage("pool", "add", "--url", fake.url, "--name", f"fake{i}", data_dir=data_dir, **env)
            assert result.returncode == 0, result.stderr
        created = manage("apikey", "create", "browser-test", data_dir=data_dir, **env)
        assert created.returncode == 0, created.stderr
        app = App(data_dir, **env)
        app.key = created.stdout.strip().splitlines()[-1]
        app.password = wait_until(
            lambda: read_or_empty(data_dir / "admin-password.txt"), 60, what="the admin password"
        )
        app.wait_ready()
        yield app
    finally:
        if app is not None:
            app.stop()
        for fake in fakes:
            fake.stop()


def send_traffic(app: App, stop: threading.Event) -> None:
    """Chat completions through the gateway until told to stop, a few a second."""
    body = json.dumps({"model": "vibethinker", "messages": [{"role": "user", "content": "2+2?"}]}).encode()
    while not stop.is_set():
        request = urllib.request.Request(
            app.url + "/v1/chat/completions",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {app.key}"},
        )
        with contextlib.suppress(OSError):  # a failed request is a point on the errors line too
            urllib.request.urlopen(request, timeout=10).read()
        stop.wait(0.2)


def test_an_operator_drains_a_member_and_watches_the_charts_move(app, browser):
    # The Content-Security-Policy must not break htmx, uPlot or the websocket: any violation fails.
    page = app.operator_page(browser, "/dashboard/members/")

    # See the members, live.
    row = page.locator('tr[data-member="fake1"]')
    row.locator(".state", has_text="ready").wait_for(timeout=15_000)
    page.locator('tr[data-member="fake2"] .state', has_text="ready").wait_for(timeout=15_000)
    page.locator("#live.on").wait_for(timeout=10_000)

    # Drain one: its state changes in the table, with no reload of the page.
    page.evaluate("window.__sameDocument = true")
    row.get_by_role("button", name="drain").click()
    row.locator(".state", has_text="stopped").wait_for(timeout=15_000)
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator('tr[data-member="fake2"] .state').inner_text() == "ready"

    # The overview's charts draw points as traffic flows through the gateway.
    stop = threading.Event()
    traffic = threading.Thread(target=send_traffic, args=(app, stop), daemon=True)
    traffic.start()
    try:
        page.click("nav >> text=Overview")
        page.wait_for_url("**/dashboard/")
        page.wait_for_function(
            "() => window.vibeadmin?.charts?.traffic?.columns[1].some((v) => v > 0)",
            timeout=20_000,
        )
        # ... and tokens/s per member: a series for the member that answers.
        page.wait_for_function(
            "() => window.vibeadmin.charts.member_tokens.names.includes('fake2')", timeout=20_000
        )
        time.sleep(3)  # a few more seconds of points, for the screenshot
    finally:
        stop.set()
        traffic.join(timeout=15)
    assert page.locator('[data-chart="traffic"] canvas').count() == 1
    assert page.locator('[data-chart="member_tokens"] canvas').count() == 1
    assert float(page.locator('[data-total="rps"]').inner_text()) > 0
    assert page.locator("#no-gpu").count() + page.locator('[data-chart="gpu"]').count() == 1

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
    assert page.errors == []
    assert page.evaluate("window.__violations") == []
