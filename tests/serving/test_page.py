"""The web page in a real browser: Playwright drives Debian's chromium (headless) against the live loopback server,
uploads a real HAM10000 image and checks the rendered result. Screenshot: test-artifacts/serving-page.png."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def test_upload_renders_result(browser, live_url: str, unseen_images: list[Path], seen_image: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_url + "/", wait_until="networkidle")
    assert "Decision support, not a diagnosis" in page.inner_text("#notice")
    page.wait_for_function("document.querySelectorAll('#site option').length > 5")  # filled from /v1/model
    assert "CC BY-NC 4.0" in page.inner_text("#model-info")

    page.set_input_files("#file", str(unseen_images[0]))
    page.fill("#age", "52")
    page.select_option("#sex", "female")
    page.select_option("#site", "back")
    page.click("#submit")
    page.wait_for_selector("#ranking li", timeout=30_000)

    items = page.locator("#ranking li")
    assert items.count() == 3
    probs = [float(t.split()[-1].rstrip("%")) for t in items.all_inner_texts()]
    assert probs == sorted(probs, reverse=True) and all(0 <= p <= 100 for p in probs)
    badge = page.locator("#triage")
    assert badge.inner_text().startswith("Priority ") and "badge p" in badge.get_attribute("class")
    assert page.locator("#heat-overlay").get_attribute("src").startswith("data:image/png;base64,")
    assert page.locator("#heat").is_visible()
    assert page.inner_text("#triage-reason").startswith("Rule (")
    assert not page.locator("#seen").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serving-page.png"), full_page=True)

    page.set_input_files("#file", str(seen_image))  # a training image: marked, not refused
    page.click("#submit")
    page.wait_for_selector("#seen:not([hidden])", timeout=30_000)
    assert "Seen in training" in page.inner_text("#seen") and seen_image.stem in page.inner_text("#seen")

    page.set_input_files("#file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"})
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])")
    assert "unsupported_image" in page.inner_text("#error")
    assert not errors, errors


def test_ood_image_shows_the_not_assessable_banner(browser, live_url: str, tmp_path: Path) -> None:
    import httpx
    import numpy as np
    from PIL import Image
    from skimage import data

    candidates = {"noise.png": Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3),
                                                                                dtype=np.uint8)),
                  "astronaut.png": Image.fromarray(data.astronaut()), "coffee.png": Image.fromarray(data.coffee())}
    flagged = None
    for name, img in candidates.items():
        img.save(tmp_path / name)
        with (tmp_path / name).open("rb") as f:
            if httpx.post(f"{live_url}/v1/predict", files={"image": (name, f, "image/png")}, timeout=60).json()["ood"]:
                flagged = tmp_path / name
                break
    assert flagged is not None, "no far-OOD image was flagged"
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(live_url + "/", wait_until="networkidle")
    page.wait_for_function("document.getElementById('operating-point').textContent.length > 0")
    assert "chosen on validation" in page.inner_text("#operating-point")
    page.set_input_files("#file", str(flagged))
    page.click("#submit")
    page.wait_for_selector("#ood:not([hidden])", timeout=30_000)
    assert page.inner_text("#ood").startswith("NOT ASSESSABLE")
    assert page.inner_text("#triage").startswith("Not assessable") and "na" in page.get_attribute("#triage", "class")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serving-page-ood.png"), full_page=True)
