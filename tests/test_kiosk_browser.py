"""The kiosk page in a real browser: Debian's headless Chromium driven by Playwright, against a live server.

Run them alone with `pytest -m browser`. They need `apt-get install chromium` (the Makefile's test target does
it); without the browser they skip, unless FMNIST_EDGE_REQUIRE_BROWSER=1 (set by `make test`, so CI never
skips them silently). Screenshots go to $FMNIST_EDGE_TEST_ARTIFACTS (default: test-artifacts/).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from images import photo
from PIL import Image

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("FMNIST_EDGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("FMNIST_EDGE_REQUIRE_BROWSER") == "1"
SHOTS = Path(os.environ.get("FMNIST_EDGE_TEST_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts"))

if not REQUIRED:
    if not CHROMIUM:
        pytest.skip("no chromium on PATH: apt-get install chromium (or set FMNIST_EDGE_CHROMIUM)", allow_module_level=True)
    pytest.importorskip("playwright")
from playwright import sync_api  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM, "FMNIST_EDGE_REQUIRE_BROWSER=1 but no chromium found: apt-get install chromium"
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            # root in a container needs --no-sandbox; the fake camera shows a test pattern to getUserMedia
            args=["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"],
        )
        yield b
        b.close()


@pytest.fixture()
def page(browser, url):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["camera"], origin=url)
    pg = context.new_page()
    problems = []
    pg.on("pageerror", lambda exc: problems.append(str(exc)))
    local = (url + "/", "blob:" + url + "/", "data:")  # the preview is a blob: URL of the upload
    pg.on("request", lambda req: None if req.url.startswith(local) else problems.append(f"external fetch {req.url}"))
    pg.goto(url + "/")
    yield pg
    context.close()
    assert not problems, problems


def test_uploading_a_photo_shows_the_right_label(page, clf, fmnist, tmp_path):
    picture = tmp_path / "garment.jpg"
    Image.fromarray(np.stack([photo(fmnist.x_test[0])] * 3, axis=-1)).save(picture, quality=95)
    want = clf.predict(picture)
    expect = sync_api.expect

    page.set_input_files("#file", str(picture))
    expect(page.locator("#label")).to_have_text(want.label, timeout=15_000)
    expect(page.locator("#bars li")).to_have_count(3)
    expect(page.locator("#bars li").first).to_contain_text(want.label)
    expect(page.locator("#latency")).to_have_text(re.compile(r"^\d+\.\d$"))
    expect(page.locator("#message")).to_be_hidden()
    assert page.locator("#preview").is_visible()
    assert "CPU" in page.locator("#model-info").inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "kiosk.png"))


def test_a_picture_it_cannot_read_gives_a_clear_message(page, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    expect = sync_api.expect

    page.set_input_files("#file", str(broken))
    expect(page.locator("#message")).to_be_visible(timeout=15_000)
    expect(page.locator("#message")).to_contain_text("could not be used")
    expect(page.locator("#result")).to_be_hidden()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "kiosk-error.png"))


def test_the_camera_frame_is_sent_as_a_jpeg_and_answered(page, clf):
    """Chromium's fake camera stands in for the kiosk's: Start camera, Classify, and an answer appears."""
    expect = sync_api.expect
    page.click("#start-camera")
    expect(page.locator("#classify")).to_be_enabled(timeout=15_000)
    # Polled from here: wait_for_function compiles its predicate with `new Function` in the page, which the
    # kiosk's CSP (no 'unsafe-eval') refuses whenever the first check is false.
    video, deadline = page.locator("#video"), time.monotonic() + 15
    while video.evaluate("v => v.videoWidth") == 0:
        assert time.monotonic() < deadline, "Chromium's fake camera delivered no frame in 15 s"
        page.wait_for_timeout(100)
    with page.expect_response(lambda r: r.url.endswith("/predict")) as answer:
        page.click("#classify")
    response = answer.value
    assert response.request.headers["content-type"] == "image/jpeg"
    if response.ok:  # the test pattern is some garment to the model: any of the ten, shown with its bars
        body = response.json()
        expect(page.locator("#label")).to_have_text(body["label"])
        assert body["label"] in clf.class_names
    else:  # or a picture it refuses, shown as a message
        assert response.status in (413, 422)
        expect(page.locator("#message")).to_be_visible()



def test_chromium_fetch_sees_the_413_of_an_oversized_upload(page):
    status, text = page.evaluate("""async () => {
        const r = await fetch('/predict', {method: 'POST', headers: {'Content-Type': 'image/jpeg'},
                                           body: new Uint8Array(30 * 1024 * 1024)});
        return [r.status, await r.text()];
    }""")
    assert status == 413 and "over the 10.0 MiB limit" in text
