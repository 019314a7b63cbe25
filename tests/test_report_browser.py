"""The HTML report in a real browser: headless Chromium renders a report made by a tiny real sweep.

Checks, at a 1280-pixel-wide window: every image loads (naturalWidth > 0, folded ones included),
the headline table lies inside the first 1280x800 screen without scrolling, the headline samples
panel starts on that screen, and nothing overflows horizontally (document scrollWidth <=
viewport width), folded or unfolded.

The page is a copy of ``index.html`` (beside it, so the figures resolve) with every <details>
open, so that the load event waits for every image, and a small script that measures inside the
load event (first unfolded, then with the details closed again, as the page opens) and writes
the results into the DOM as JSON; Chromium's ``--dump-dom`` prints that DOM. The layout depends
on the width only, so the 800-pixel screen is checked against the table's position. Skipped,
with the reason, when Chromium is not installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

GBENCH = [sys.executable, "-m", "generative_bench"]
WIDTH, HEIGHT = 1280, 800


def _chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    return None


CHROMIUM = _chromium()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (/usr/bin/chromium, Debian package "
                                 "'chromium') is not installed: the HTML report was not checked in a browser")]

MEASURE = """
<script>
window.addEventListener("load", () => {
  // synchronous, inside the load event: every image (the details were opened in this copy) has loaded
  const box = el => { if (!el) return null; const r = el.getBoundingClientRect();
    return {top: r.top, left: r.left, bottom: r.bottom, right: r.right}; };
  const doc = document.documentElement;
  const out = {images: [...document.images].map(i => ({src: (i.getAttribute("src") || "").slice(0, 200),
                                                      complete: i.complete, naturalWidth: i.naturalWidth})),
               scrollWidthOpen: doc.scrollWidth};
  document.querySelectorAll("details").forEach(d => { d.open = false; });  // the page as it opens
  Object.assign(out, {innerWidth: window.innerWidth, scrollWidth: doc.scrollWidth, scrollY: window.scrollY,
                      headline: box(document.querySelector("table.headline")),
                      panel: box(document.querySelector(".panel img"))});
  const pre = document.createElement("pre");
  pre.id = "gbench-browser-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def measure(report: Path) -> dict:
    """Render ``report/index.html`` in headless Chromium and return what the script measured."""
    page = Path(report).resolve() / "_browser_check.html"
    text = (page.parent / "index.html").read_text()
    page.write_text(text.replace("<details", "<details open").replace("</body>", MEASURE + "</body>"))
    try:
        with tempfile.TemporaryDirectory(prefix="gbench-chromium-") as profile:
            cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--hide-scrollbars", "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
                   "--force-device-scale-factor=1", f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=5000",
                   "--dump-dom", page.as_uri()]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    finally:
        page.unlink()
    found = re.findall(r'<pre id="gbench-browser-check">(.*?)</pre>', r.stdout, re.S)
    assert found, f"chromium printed no measurement (exit {r.returncode}): {r.stderr[-2000:]}"
    return json.loads(html.unescape(found[-1]))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The report that a tiny real sweep (Gaussian baseline and VAE on the ring) writes when it ends."""
    sweep = tmp_path_factory.mktemp("browser") / "sweep"
    cmd = GBENCH + ["-m", "model=gaussian,vae", "seed=0", "train.max_steps=20", "eval.num_samples=200",
                    "eval.nll.examples=50", f"hydra.sweep.dir={sweep}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (sweep / "report" / "index.html").is_file()
    return sweep / "report"


def test_report_renders_in_chromium(report):
    m = measure(report)
    assert m["innerWidth"] == WIDTH and m["scrollY"] == 0
    # every image loads
    assert m["images"], "the report shows no figure"
    broken = [i["src"] for i in m["images"] if not i["complete"] or i["naturalWidth"] <= 0]
    assert not broken, broken
    srcs = {i["src"] for i in m["images"]}
    assert "plots/P1_headline_samples.png" in srcs and any("_training_" in s for s in srcs)
    # the headline table is on the first screen, whole, without scrolling
    box = m["headline"]
    assert box is not None, "no headline table"
    assert box["top"] >= 0 and box["left"] >= 0, box
    assert box["bottom"] <= HEIGHT and box["right"] <= WIDTH, box
    assert m["panel"] is not None and m["panel"]["top"] < HEIGHT, m["panel"]  # the samples start on it too
    # nothing overflows horizontally, folded or unfolded
    assert m["scrollWidth"] <= m["innerWidth"], m
    assert m["scrollWidthOpen"] <= m["innerWidth"], m


def test_screenshot_script_writes_the_first_screen(report, tmp_path):
    from PIL import Image

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "shot.png"
    r = subprocess.run([sys.executable, str(root / "experiments" / "screenshot_report.py"), str(report),
                        "--out", str(out), "--chromium", CHROMIUM], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(out) as im:
        assert im.size == (WIDTH, HEIGHT)
        low, high = im.convert("L").getextrema()
        assert high - low > 100  # a page was drawn, not a blank screen


def test_the_browser_check_sees_a_broken_image_and_an_overflow(report, tmp_path):
    """The measurement itself: a missing figure and a too-wide block are caught."""
    bad = tmp_path / "bad"
    shutil.copytree(report, bad)
    page = bad / "index.html"
    page.write_text(page.read_text().replace(
        "</body>", '<img src="plots/missing.png" alt="x"><div style="width:2000px">wide</div></body>'))
    m = measure(bad)
    assert [i["src"] for i in m["images"] if i["naturalWidth"] <= 0] == ["plots/missing.png"]
    assert m["scrollWidth"] > m["innerWidth"]
