"""report.html (and the documentation site) in a real browser: headless Chromium.

The report of tests/test_report_interactive.py's study file is opened from disk (no server,
no network): no JavaScript error is logged, every plotly figure is drawn (the 3-D surface on
its WebGL canvas, the contour and error bars as SVG), hovering the contour shows the value at
the point, picking another run draws its surface, a click on a column header sorts the table
(again: the other way) and the filter box hides the rows without the words typed. A
screenshot is saved under the test's temporary folder (its path is printed). ``site/index.html``
(``make docs``) is opened too, where it has been built: it loads without errors, from disk alone.

Chromium is the system's (Debian: ``apt-get install chromium chromium-driver``), driven by
selenium with the driver at /usr/bin/chromedriver: nothing is downloaded. Without them the
tests skip and say what is missing.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from landscape.store.file import Store
from tests.test_report_interactive import build

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LANDSCAPE_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.environ.get("LANDSCAPE_CHROMEDRIVER", "/usr/bin/chromedriver")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium; it is in the dev extra)"
    for path, package in ((CHROMIUM, "chromium"), (DRIVER, "chromium-driver")):
        if not shutil.which(path):
            return f"no {path} (apt-get install {package})"
    return None


@pytest.fixture(scope="module")
def browser():
    missing = _missing()
    if missing:
        pytest.skip(f"no headless browser: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must not download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--enable-unsafe-swiftshader",  # software WebGL: the 3-D surface without a GPU
        "--use-angle=swiftshader",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _wait(driver, script: str, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout:.0f} s: {script}")


def _severe(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    r = build(folder)
    browser.get(r.html.as_uri())
    state = _wait(
        browser, "var s = window.landscapeReport; return s && s.doneAt !== null ? s : null"
    )
    return browser, r, state, folder


def _slot(driver, title: str):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.figure-slot')).find("
        "s => s.querySelector('figcaption b').textContent.startsWith(arguments[0]))",
        title,
    )


def test_figures_are_drawn_without_javascript_errors(page):
    driver, _, state, folder = page
    assert state["figures"] == 6 and state["drawn"] == 6 and state["failed"] == 0
    assert _severe(driver) == []
    for slot in driver.find_elements("css selector", ".figure-slot"):
        plot = slot.find_element("css selector", ".plot")
        assert plot.get_attribute("data-drawn")
        assert plot.find_elements("css selector", ".main-svg")  # plotly drew its SVG layers
    surface = _slot(driver, "Surface pca_2d")
    info = driver.execute_script(
        "var p = arguments[0].querySelector('.plot');"
        "return {canvas: p.querySelectorAll('.gl-container canvas').length,"
        " types: p.data.map(t => t.type), rows: p._fullData[0].z.length,"
        " cols: p._fullData[0].z[0].length, contour: p.querySelectorAll('.contourlevel').length,"
        " gl: !!p._fullLayout.scene._scene.glplot}",
        surface,
    )
    assert info["canvas"] >= 1 and info["gl"]  # the 3-D surface is on a WebGL canvas
    assert info["types"][:2] == ["surface", "contour"] and info["contour"] > 0
    assert (info["rows"], info["cols"]) == (13, 11)  # z[y][x] of the 11 x 13 grid
    bars = _slot(driver, "Kendall's tau with the gap").find_elements(
        "css selector", ".errorbar path"
    )
    assert bars  # the intervals are drawn as error bars
    shot = folder / "report.png"
    driver.execute_script("arguments[0].scrollIntoView()", surface)
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"\nscreenshot of the surface figure: {shot}")


def test_hover_shows_the_value_and_another_run_can_be_picked(page):
    driver, r, _, _ = page
    surface = _slot(driver, "Surface pca_2d")
    with Store(r.file) as s:
        a = s.record("sgd-random-seed0", "surfaces", "pca_2d").arrays
    i, j = 8, 3  # a grid point away from the trajectory
    text = driver.execute_script(
        "var p = arguments[0].querySelector('.plot');"
        "Plotly.Fx.hover(p, {xval: arguments[1], yval: arguments[2]}, 'xy');"
        "return Array.from(p.querySelectorAll('.hoverlayer .hovertext'))"
        ".map(h => h.textContent).join(' | ')",
        surface,
        float(a["x"][i]),
        float(a["y"][j]),
    )
    assert f"train loss {np.float32(a['train_loss'][i, j]):.4g}" in text
    pick = surface.find_element("css selector", "select")
    driver.execute_script(
        "arguments[0].value = arguments[0].options[1].value;"
        "arguments[0].dispatchEvent(new Event('change'))",
        pick,
    )
    slot = surface.get_attribute("id")
    _wait(
        driver,
        f"return document.querySelector('#{slot} .plot').getAttribute('data-drawn') === '{slot}-1'",
    )
    title = surface.find_element("css selector", ".gtitle").text
    assert title.startswith("adam-random-seed0")
    assert _severe(driver) == []


def _column(driver, table, name: str) -> list[str]:
    return driver.execute_script(
        "var t = arguments[0]; var i = Array.from(t.tHead.rows[0].cells).findIndex("
        "c => c.textContent === arguments[1]);"
        "return Array.from(t.tBodies[0].rows).filter(r => !r.hidden)"
        ".map(r => r.cells[i].textContent)",
        table,
        name,
    )


def test_a_click_on_a_header_sorts_and_the_filter_hides_rows(page):
    driver, _, _, _ = page
    table = next(
        t
        for t in driver.find_elements("css selector", "table.sortable")
        if t.find_elements("xpath", ".//th[normalize-space()='test acc']")
    )
    before = _column(driver, table, "test acc")
    header = table.find_element("xpath", ".//th[normalize-space()='test acc']")
    driver.execute_script("arguments[0].scrollIntoView()", header)
    header.click()
    up = _column(driver, table, "test acc")
    assert up != before and sorted(up) == sorted(before)
    values = [float(v) for v in up]
    assert values == sorted(values)
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    down = [float(v) for v in _column(driver, table, "test acc")]
    assert down == sorted(values, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    box = table.find_element("xpath", "ancestor::div[@class='table']//input[@class='filter']")
    box.send_keys("adam labels")
    runs = _column(driver, table, "run")
    assert runs and all("adam" in r and "labels" in r for r in runs)
    count = table.find_element("xpath", "ancestor::div[@class='table']//span[@class='count']")
    assert count.text == f"{len(runs)} of {len(before)} rows"
    assert _severe(driver) == []


def test_the_documentation_site_opens(browser):
    index = ROOT / "site" / "index.html"
    if not index.exists():
        pytest.skip(f"no {index.relative_to(ROOT)}: build the documentation with `make docs`")
    browser.get_log("browser")  # what came before
    browser.get(index.as_uri())
    _wait(browser, "return document.readyState === 'complete'")
    assert browser.title
    assert browser.find_elements("css selector", "h1, h2")
    severe = _severe(browser)
    remote = [m for m in severe if m.startswith(("http://", "https://"))]
    assert not remote, (
        "the site loads from the network, it must work offline (mkdocs.yml, material theme: "
        f"`font: false`): {remote}"
    )
    assert severe == []
