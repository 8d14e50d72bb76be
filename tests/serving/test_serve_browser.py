"""The page in a real browser: headless Chromium (Debian's chromium + chromium-driver, through Selenium)
opens / from a server on a free loopback port, uploads an image, and the boxes are drawn: the page's
state says how many, the screenshot (kept under the test's tmp_path) shows the box colour, and the
top-k slider redraws without a new request."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import image_bytes, live_server

from multibox.serving.app import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
BOX_COLOUR = (0xFF, 0x2D, 0x95)  # static/app.js's BOX

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="no chromium/chromedriver (make test installs Debian's when apt runs as root)")


def box_pixels(screenshot: Path) -> int:
    """How many pixels of the screenshot have the page's box colour."""
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(BOX_COLOUR)).sum(-1) < 30).sum())


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def test_page_uploads_an_image_and_draws_its_boxes(predictor, browser, tmp_path):
    image = tmp_path / "grey.png"
    image.write_bytes(image_bytes(320, 240))
    with live_server(create_app(lambda: predictor)) as url:
        browser.get(url + "/")
        wait_for(browser, "return document.getElementById('model').textContent.includes('K = 16')")
        browser.save_screenshot(str(tmp_path / "before.png"))
        browser.find_element("id", "file").send_keys(str(image))
        wait_for(browser, "return document.body.dataset.state === 'done' || document.body.dataset.state === 'error'")
        assert browser.execute_script("return document.body.dataset.state") == "done", \
            browser.find_element("id", "status").text
        drawn = int(browser.execute_script("return document.body.dataset.boxesDrawn"))
        received = browser.execute_script("return window.multibox.result.boxes.length")
        assert drawn == min(10, received) > 0  # the slider's default top 10 of the reply's boxes
        browser.save_screenshot(str(tmp_path / "serve_page.png"))
        assert box_pixels(tmp_path / "serve_page.png") > 50 and box_pixels(tmp_path / "before.png") == 0
        requests = browser.execute_script("return performance.getEntriesByType('resource').length")
        browser.execute_script("const s = document.getElementById('topk'); s.value = 1;"
                               "s.dispatchEvent(new Event('input'));")
        assert browser.execute_script("return document.body.dataset.boxesDrawn") == "1"
        assert browser.execute_script("return performance.getEntriesByType('resource').length") == requests
        assert "1 of" in browser.find_element("id", "status").text
        browser.save_screenshot(str(tmp_path / "serve_page_top1.png"))
