"""The run report as a person sees it: rendered by headless chromium (Debian's, driven by Playwright as
the other browser tests do), with a VeRL run's curves, its tables and the verdict; screenshot kept in
tests/browser/artifacts/ (or $CL_BROWSER_ARTIFACTS)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.helpers import CHROMIUM, CHROMIUM_FLAGS
from tests.conftest import REPO
from tests.unit.helpers import FIXTURE, report

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run `make browser-tools` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def test_report_renders_tables_curves_and_verdict(page: Any, tmp_path: Path) -> None:
    from continuous_learning_trainer.verl_engine.run import read_history
    from PIL import Image

    report(tmp_path, read_history(FIXTURE))
    page.goto((tmp_path / "run" / "report" / "report.html").as_uri())
    # every plot decoded (an image that failed to load has naturalWidth 0)
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
    assert len(widths) == 2 and widths[0] > 900 and widths[1] > 300, (
        widths
    )  # curves, slice deltas (no scores)
    for section, rows in (
        ("decision", 2 + 3 + 1),
        ("dataset", 3 + 3),
        ("training", 4 + 2 + 1),
        ("evaluation", 1 + 2),
    ):
        count = page.locator(f"section#{section} tbody tr").count()
        assert count == rows, (section, count)
    verdict = page.locator(".verdict")
    assert verdict.inner_text().startswith("Gate: REJECT candidate v4")
    assert verdict.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(251, 224, 224)"
    billing = page.locator("section#decision tr.bad td").first
    assert billing.inner_text() == "agent=billing" and billing.is_visible()
    folder = Path(os.environ.get("CL_BROWSER_ARTIFACTS") or REPO / "tests" / "browser" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    shot = page.screenshot(path=str(folder / "run-report.png"), full_page=True)
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    assert image.height > 1500  # tables and curves, not an empty page
    # the verdict's pink, the slices' red and green rows are painted where the browser laid them out
    box = verdict.bounding_box()
    assert image.getpixel((int(box["x"] + 3), int(box["y"] + 3))) == (251, 224, 224)
    good = page.locator("section#decision tr.good td").nth(1).bounding_box()
    assert image.getpixel((int(good["x"] + 3), int(good["y"] + 3))) == (238, 250, 240)
