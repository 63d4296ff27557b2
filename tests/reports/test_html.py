"""The HTML reports render in headless Chromium (Debian's ``chromium``) with every section; the screenshots are
kept under ``test-artifacts/report-screenshots/`` (git-ignored) for people to look at."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "report-screenshots"
HEIGHT = 24_000
RUN_SECTIONS = ("Notice", "Headline metrics (held-out test split)", "Per-class metrics", "Confusion matrix",
                "ROC curves", "Precision-recall curves", "Calibration", "Operating points",
                "Most severe suspected class", "Grad-CAM", "Learning curves", "Training dynamics", "Data", "Timing",
                "Configuration")
CV_SECTIONS = ("Cross-validation: single fold vs ensemble", "Per-fold test metrics", "Fold learning curves",
               "Calibration", "Operating points", "Most severe suspected class", "Grad-CAM")


def render(report: Path, name: str) -> np.ndarray:
    """Screenshot ``report`` in a 1200 x HEIGHT window; keep the PNG and a trimmed copy split into pages."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"{name}.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={out}", f"--window-size=1200,{HEIGHT}", report.resolve().as_uri()],
                   check=True, capture_output=True, timeout=180)
    img = Image.open(out).convert("RGB")
    gray = np.asarray(img.convert("L"))
    used = int(np.flatnonzero((gray < 245).any(axis=1)).max()) + 20
    for page, top in enumerate(range(0, used, 3000)):  # readable pages of the rendered report
        img.crop((0, top, 1200, min(top + 3000, used))).save(ARTIFACTS / f"{name}-page{page + 1}.png")
    return gray


def headings(html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", h).replace("&amp;", "&") for h in re.findall(r"<h2>(.*?)</h2>", html)]


def check_report(report: Path, sections: tuple[str, ...], name: str) -> None:
    html = report.read_text()
    found = headings(html)
    missing = [s for s in sections if s not in found]
    assert not missing, f"sections missing from {report}: {missing}"
    assert not re.search(r"""(src|href)=["']https?://""", html), "the report must open offline (no remote assets)"
    assert html.count("data:image/png;base64,") >= 5
    gray = render(report, name)
    content = np.flatnonzero((gray < 245).any(axis=1))
    assert content.max() < HEIGHT - 50, "the page is taller than the screenshot: sections would be cut off"
    assert content.max() > 4000, "the rendered page is too short to hold the report"
    assert (gray < 128).mean() > 0.002, "the screenshot is blank"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_run_report_renders_every_section(cv_dir: Path) -> None:
    check_report(cv_dir / "fold-0" / "report.html", RUN_SECTIONS, "run-report")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_cross_validation_report_renders_every_section(cv_dir: Path) -> None:
    check_report(cv_dir / "report.html", CV_SECTIONS, "cv-report")
