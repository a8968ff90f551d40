"""Every page checked by an accessibility engine: axe-core (Deque's, from npm, served under
/static/vendor/axe-core/ but loaded by no page) is injected into the solve page, the login
page and each dashboard page in Debian's headless Chromium, against the real app; a
violation of impact serious or critical fails the test. The app's one member is a fake
llama.cpp server (a remote member), so the members' pages have a row to show."""

from __future__ import annotations

import pytest

from testing.fake_member import FakeMemberProcess
from tests.browser_kit import BROWSER, App, read_or_empty
from tests.helpers import manage, wait_until

pytestmark = BROWSER

AXE = "/static/vendor/axe-core/axe.min.js"
FAILING_IMPACTS = {"serious", "critical"}

# Every dashboard page a person can open (partials fetched by htmx are checked inside them).
DASHBOARD_PAGES = [
    "/dashboard/",
    "/dashboard/members/",
    "/dashboard/member/fake1/",
    "/dashboard/routing/",
    "/dashboard/keys/",
    "/dashboard/keys/1/usage/",
    "/dashboard/cache/",
    "/dashboard/alerts/",
    "/dashboard/autoscaling/",
    "/dashboard/audit/",
    "/dashboard/quality/",
    "/dashboard/models/",
    "/dashboard/users/",
]


@pytest.fixture
def app(tmp_path):
    """The app with one ready remote member (a fake llama.cpp server) and an API key."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    model = tmp_path / "stand-in.gguf"  # a remote member never loads it
    model.write_bytes(b"GGUF" + bytes(64))
    env = {"VIBEADMIN_MODEL": str(model)}
    fake = FakeMemberProcess(name="fake1", ttft=0.05, tpt=0.01, max_tokens=16).start()
    app = None
    try:
        assert manage("migrate", "--noinput", "-v", "0", data_dir=data_dir, **env).returncode == 0
        added = manage("pool", "add", "--url", fake.url, "--name", "fake1", data_dir=data_dir, **env)
        assert added.returncode == 0, added.stderr
        created = manage("apikey", "create", "a11y-test", data_dir=data_dir, **env)
        assert created.returncode == 0, created.stderr
        app = App(data_dir, **env)
        app.password = wait_until(
            lambda: read_or_empty(data_dir / "admin-password.txt"), 60, what="the admin password"
        )
        app.wait_ready()
        yield app
    finally:
        if app is not None:
            app.stop()
        fake.stop()


def serious_violations(page) -> list[str]:
    """axe-core's violations of impact serious or critical on the page as it is now, one
    line each: rule id, impact, and every element it found."""
    page.add_script_tag(url=AXE)
    violations = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(' '.join(n['target']) for n in v['nodes'])}"
        for v in violations
        if v["impact"] in FAILING_IMPACTS
    ]


def test_axe_finds_nothing_serious_on_the_login_solve_and_dashboard_pages(app, browser):
    found: dict[str, list[str]] = {}
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    for path in ["/login/", "/solve/"]:
        page.goto(app.url + path)
        page.wait_for_load_state("networkidle")
        found[path] = serious_violations(page)
    page.close()

    page = app.operator_page(browser, "/dashboard/")
    for path in DASHBOARD_PAGES:
        page.goto(app.url + path)
        page.wait_for_load_state("networkidle")  # htmx panels loaded, as a person sees them
        found[path] = serious_violations(page)

    assert set(found) == {"/login/", "/solve/", *DASHBOARD_PAGES}
    problems = [f"{path}: {line}" for path, lines in found.items() for line in lines]
    assert not problems, "axe-core found serious or critical violations:\n" + "\n".join(problems)


def test_axe_is_served_but_loaded_by_no_page(app, browser):
    """The engine is for the tests: no page asks for it, yet its file is there to inject."""
    page = app.operator_page(browser, "/dashboard/")
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for path in ["/solve/", *DASHBOARD_PAGES]:
        page.goto(app.url + path)
        page.wait_for_load_state("networkidle")
    assert not [url for url in requested if "axe" in url]
    assert page.request.get(app.url + AXE).ok
