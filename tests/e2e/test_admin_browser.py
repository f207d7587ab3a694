"""The admin in a real headless Chromium (issue 21), on the real stack: gunicorn, the control
consumer, the beat and a local worker. A team operator (staff, no Django permission granted by
hand) signs in, filters the processes by state, opens a RUNNING ``sleep``, reads its log on the
page, stops it there and reloads until it shows STOPPED.

The browser is Debian's chromium and chromium-driver (deploy/browser.sh, which deploy/test.sh
runs). Screenshots of each step are kept under var/test-artifacts/admin-browser/ (or
$ORCH_TEST_ARTIFACTS/admin-browser/), named in the test's output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from apps.teams.models import TeamClient
from apps.teams.roles import Role
from apps.teams.services import team_member_add
from tests.client.support import web_server
from tests.e2e.client import post_process, wait_for_end, wait_for_log, wait_for_state
from tests.e2e.stack import ROOT, wait_until
from workers.contract import State

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PASSWORD = "a-password-for-the-browser-test"


def browser_paths() -> tuple[str, str]:
    """Chromium and its driver, as deploy/browser.sh installs them; skip (a failure in CI)
    when they are not there."""
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no chromium or chromedriver: run deploy/browser.sh")
    return chromium, driver


@pytest.fixture
def artifacts() -> Path:
    root = Path(os.environ.get("ORCH_TEST_ARTIFACTS") or ROOT / "var" / "test-artifacts")
    folder = root / "admin-browser"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"screenshots in {folder}")
    return folder


@pytest.fixture
def browser(artifacts):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    chromium, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # Headless, as root in a container: no sandbox, no /dev/shm of its size.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1600,1000"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=DriverService(executable_path=driver))
    chrome.implicitly_wait(5)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def admin_url(stack_env, tmp_path):
    """The web server of the stack, with the admin's static files collected for it."""
    env, run_dir = stack_env
    static = tmp_path / "static"
    env = {**env, "STATIC_ROOT": str(static)}
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "collectstatic", "--noinput",
                    "-v0"], env=env, check=True, cwd=ROOT)
    with web_server(env, run_dir) as (url, _):
        yield url


@pytest.fixture
def operator(make_client, django_user_model, pipelines):
    """A staff user, operator of the team of an OAuth2 client (which starts the runs), with no
    Django permission of its own: the admin shows what the role allows."""
    application, api = make_client("lab")
    user = django_user_model.objects.create_user("lab-operator", password=PASSWORD,
                                                 is_staff=True)
    team_member_add(TeamClient.objects.get(application=application).team, user, Role.OPERATOR)
    return user, api


def test_an_operator_filters_opens_reads_and_stops_a_running_process_in_the_browser(
        admin_url, browser, artifacts, operator, client, local_worker):
    from selenium.webdriver.common.by import By

    user, api = operator
    wait_until(lambda: client.get("/api/health/").json()["pools"].get("local", {})
               .get("workers"), what="a live worker of the local pool")
    finished = post_process(api, "hello")
    wait_for_end(finished, timeout=120)
    running = post_process(api, "sleep", {"seconds": 600})
    wait_for_state(running, State.RUNNING, timeout=120)
    wait_for_log(api, running, "slept 1 of 600 s", timeout=60)

    def shot(name: str) -> None:
        browser.save_screenshot(str(artifacts / f"{name}.png"))

    def badge() -> str:
        return browser.find_element(By.CSS_SELECTOR, ".field-state_badge .state-badge").text

    try:
        browser.get(f"{admin_url}/admin/login/?next=/admin/processes/process/")
        browser.find_element(By.NAME, "username").send_keys(user.username)
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        assert browser.current_url.endswith("/admin/processes/process/")
        page = browser.find_element(By.ID, "result_list").text
        assert running[:8] in page
        assert finished[:8] in page
        shot("1-processes")

        # The state filter: only the running one is left.
        browser.find_element(By.ID, "changelist-filter").find_element(
            By.LINK_TEXT, State.RUNNING.value).click()
        assert "state__exact=RUNNING" in browser.current_url
        page = browser.find_element(By.ID, "result_list").text
        assert running[:8] in page
        assert finished[:8] not in page
        shot("2-filtered-running")

        browser.find_element(By.LINK_TEXT, running[:8]).click()
        assert badge() == State.RUNNING.value
        log = browser.find_element(By.CSS_SELECTOR, "pre.process-log")
        assert "slept 1 of 600 s" in log.text
        browser.execute_script("arguments[0].scrollIntoView()", log)
        shot("3-running-with-its-log")

        browser.execute_script("window.scrollTo(0, 0)")
        browser.find_element(By.ID, "stop-process").click()
        message = browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
        assert "Stopping 1 process(es)" in message or "Stopped 1 process(es)" in message
        shot("4-stop-asked")

        def shows_stopped() -> bool:
            browser.refresh()
            return badge() == State.STOPPED.value

        wait_until(shows_stopped, 60, what="the page to show STOPPED", interval=1)
        assert "STOPPED" in browser.find_element(By.ID, "events-group").text
        shot("5-stopped")
    except Exception:
        shot("failure")
        (artifacts / "failure.html").write_text(browser.page_source)
        raise
    assert wait_for_end(running).state == State.STOPPED
