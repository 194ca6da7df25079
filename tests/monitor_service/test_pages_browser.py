"""End to end in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): every
page of a running service filled with a realistic data set, the health colours as the browser
draws them, and the links factory → label → job. Screenshots go to the test's temp dir."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.monitor import Monitor, local_session, running_monitor, sqlite_url
from tests.support.monitor_dataset import MCORE, UCORE, fill

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
# The CSS colours of the health states (static/monitor.css), as computed by the browser.
COLOURS = {"ok": "rgba(46, 125, 50, 1)", "warning": "rgba(239, 108, 0, 1)", "error": "rgba(198, 40, 40, 1)"}

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return f"{path} is missing (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    reason = _missing()
    if reason:
        pytest.skip(f"browser test not run: {reason}")
    with running_monitor(sqlite_url(tmp_path_factory.mktemp("browser"))) as monitor:
        with local_session() as http:
            fill(monitor, http)
        yield monitor


@pytest.fixture(scope="module")
def browser(service: Monitor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _open(browser: Any, url: str, shots: Path, name: str) -> None:
    browser.get(url)
    assert "autopyfactory monitor" in browser.title, browser.page_source[:300]
    browser.save_screenshot(str(shots / f"{name}.png"))


def _badge(browser: Any, selector: str) -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    badge = browser.find_element(By.CSS_SELECTOR, selector)
    return badge.text, badge.value_of_css_property("background-color")


def test_index_colours(service: Monitor, browser: Any, shots: Path) -> None:
    _open(browser, service.url + "/", shots, "index")
    for factory, status in (("CERN-apf01", "ok"), ("BNL-apf02", "warning"), ("stale-apf03", "error")):
        assert _badge(browser, f'tr[data-factory="{factory}"] .health') == (status, COLOURS[status])
    assert browser.find_elements("css selector", 'tr[data-factory="CERN-apf01"] svg.chart polyline')


def test_factory_label_job_by_links(service: Monitor, browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, service.url + "/", shots, "index")
    browser.find_element(By.LINK_TEXT, "CERN-apf01").click()
    assert browser.current_url == service.url + "/factory/CERN-apf01"
    browser.save_screenshot(str(shots / "factory.png"))
    assert _badge(browser, "#heartbeat") == ("ok", COLOURS["ok"])
    assert _badge(browser, f'tr[data-label="{UCORE}"] .health')[1] == COLOURS["ok"]
    assert _badge(browser, f'tr[data-label="{MCORE}"] .health')[1] == COLOURS["warning"]
    human = browser.find_element(By.CSS_SELECTOR, f'tr[data-label="{UCORE}"] .human').text
    assert human == "12 pilots submitted: 812 activated, 3 pending, 10 running, MaxPending 15"

    browser.find_element(By.LINK_TEXT, UCORE).click()
    browser.save_screenshot(str(shots / "label.png"))
    assert browser.find_element(By.ID, "miss").text == "22"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#jobs tr.job")) == 96
    logs = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#jobs tr.job a.log")[:3]]
    assert logs[0] == f"http://cern-apf01.example.org/logs/2025-03-02/{UCORE}/1023.3.out"  # host lowercased

    browser.find_element(By.LINK_TEXT, "1000.0").click()
    browser.save_screenshot(str(shots / "job.png"))
    assert browser.current_url == service.url + "/job/CERN-apf01:1000.0"
    assert browser.find_element(By.ID, "state").text == "DONE"
    timeline = browser.find_element(By.ID, "timeline").text
    assert "CREATED" in timeline
    assert "RUNNING → EXITING" in timeline
    assert "expiry" in timeline


def test_other_pages(service: Monitor, browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    _open(browser, service.url + "/pq/CERN-PROD_UCORE", shots, "pq")
    assert {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#labels tr.label td:first-child")} == {
        "BNL-apf02",
        "CERN-apf01",
    }
    _open(browser, service.url + "/report?hours=24&min_created=10&min_percent=20", shots, "report")
    assert MCORE in browser.find_element(By.ID, "report").text
    box = browser.find_element(By.CSS_SELECTOR, "form.search input[name=q]")
    box.send_keys("infn", Keys.ENTER)
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("/search?q=infn"))
    browser.save_screenshot(str(shots / "search.png"))
    assert "INFN-T1" in browser.find_element(By.ID, "hits").text
    _open(browser, service.url + "/factory/stale-apf03", shots, "stale")
    assert "<script>alert('x')</script> & done" in browser.find_element(By.ID, "labels").text


def _external_requests(browser: Any, base: str) -> list[str]:
    """Every URL the page fetched (document, scripts, styles, XHR, images) not from ``base``."""
    urls = browser.execute_script(
        "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));"
    )
    return [url for url in urls if not url.startswith(base) and not url.startswith("data:")]


def test_api_docs_render_with_no_external_request(service: Monitor, browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    browser.get(service.url + "/docs")
    title = WebDriverWait(browser, 30).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, ".swagger-ui .info .title"))
    )
    assert title.text.startswith("autopyfactory-monitor")  # the OpenAPI document was fetched and drawn
    browser.save_screenshot(str(shots / "docs.png"))
    assert _external_requests(browser, service.url) == []
    assert "cdn" not in requests.get(service.url + "/docs", timeout=10).text.lower()
    assert requests.get(service.url + "/redoc", timeout=10).status_code == 404  # it would use a CDN
