"""The overview's profile panel in a real browser (Debian's headless Chromium, driven by
Playwright) against the real app (`manage.py serve` with no members): a stored profile's
table and its two uPlot charts, drawn within the Content-Security-Policy, and the
capacity from the profile worked out on the page."""

from __future__ import annotations

import json

import pytest

from tests.browser_kit import BROWSER, App, read_or_empty
from tests.helpers import ARTIFACTS, manage, wait_until

pytestmark = BROWSER

STORED = """
from pool.models import ProfileRun
from pool.profiling.plan import Layout, make_plan
layouts = [Layout(2, 1, 8), Layout(1, 2, 16)]
points = [
    {"layout": l.key, "level": n, "tokens_per_s": s * k, "ttft_p50_s": 0.1 * n, "ttft_censored": False}
    for l, k in zip(layouts, (1.0, 1.1)) for n, s in zip((1, 2, 4, 8, 16), (10, 15, 19, 20, 20))
]
ProfileRun.objects.create(state="done", cores=2, plan=make_plan(layouts, 300).as_dict(),
    layouts={l.key: "done" for l in layouts}, points=points, model_path="/models/q.gguf")
"""


@pytest.fixture
def app(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    model = tmp_path / "stand-in.gguf"
    model.write_bytes(b"GGUF" + bytes(64))
    env = {"VIBEADMIN_MODEL": str(model)}
    assert manage("migrate", "--noinput", "-v", "0", data_dir=data_dir, **env).returncode == 0
    stored = manage("shell", "-c", STORED, data_dir=data_dir, **env)
    assert stored.returncode == 0, stored.stderr
    app = App(data_dir, **env)
    try:
        app.password = wait_until(
            lambda: read_or_empty(data_dir / "admin-password.txt"), 60, what="the admin password"
        )
        # With no members there is no "ready" line: the page serves once this one is out.
        wait_until(lambda: "Serving on" in app.output(), 240, what="vibeadmin to serve")
        yield app
    finally:
        app.stop()


def test_an_operator_sees_the_profile_plotted_and_sizes_a_peak_from_it(app, browser):
    page = app.operator_page(browser, "/dashboard/")

    page.locator('[data-profile-chart="tokens"] canvas').wait_for(timeout=15_000)
    assert page.locator('[data-profile-chart="ttft"] canvas').count() == 1
    assert "1 x 2 threads x 16 slots" in page.locator(".profile-table").text_content()
    data = json.loads(page.locator("#profile-data").text_content())
    assert [s["label"] for s in data["series"]] == ["2 x 1 thread x 8 slots", "1 x 2 threads x 16 slots"]

    # Capacity from the profile: 50 at once of 300 tokens within 120 s, no spare.
    page.fill("#profile-capacity input[name=peak]", "50")
    page.fill("#profile-capacity input[name=spares]", "0")
    page.locator("#profile-capacity button[type=submit]").click()
    page.locator("#profile-capacity .hint").wait_for(timeout=10_000)
    # 1 x 2 x 16 makes 22 tokens/s at 8 at once: 8 answers of 300 tokens in 109 s; 50 need 7.
    assert "7 hosts" in page.locator("#profile-capacity .hint").inner_text()

    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#profile-heading").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard-profile.png"), full_page=True)
    assert page.errors == []
    assert page.evaluate("window.__violations") == []
