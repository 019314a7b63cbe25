"""Screenshot the first screen of a report: ``<report>/screenshot.png`` with headless Chromium.

    python experiments/screenshot_report.py reports/benchmark_ring/report [--size 1280,800]

Uses Debian's ``chromium`` (``apt-get install chromium``) or the browser named by ``--chromium`` /
``$CHROMIUM``; the page is the report's ``index.html``, at the window size given (default
1280x800, the first screen a reader sees).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(explicit: str | None = None) -> str | None:
    """The browser to run: ``explicit``, ``$CHROMIUM``, /usr/bin/chromium or one on PATH; None if absent."""
    for name in (explicit, os.environ.get("CHROMIUM"), "/usr/bin/chromium", *CANDIDATES):
        if name and (path := shutil.which(name)):
            return path
    return None


def chromium_args(browser: str, profile: str, size: tuple[int, int]) -> list[str]:
    """Headless flags shared by the screenshot and the browser checks (no network, own profile)."""
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--allow-file-access-from-files", f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}", "--force-device-scale-factor=1"]


def screenshot(report: Path, out: Path | None = None, size: tuple[int, int] = (1280, 800),
               browser: str | None = None, timeout: float = 120.0) -> Path:
    """Write ``out`` (default ``report/screenshot.png``): the first screen of ``report/index.html``."""
    report = Path(report).resolve()
    page = report / "index.html"
    if not page.is_file():
        raise SystemExit(f"{page} does not exist; build the report first (gbench report ... --out {report})")
    browser = find_chromium(browser)
    if browser is None:
        raise SystemExit("no Chromium found: apt-get install chromium (or pass --chromium PATH)")
    out = Path(out).resolve() if out else report / "screenshot.png"
    with tempfile.TemporaryDirectory(prefix="gbench-chromium-") as profile:
        # a taller window, cropped to ``size`` below: headless Chromium leaves the bottom rows of a
        # window-sized screenshot blank
        shot = Path(profile) / "shot.png"
        cmd = chromium_args(browser, profile, (size[0], size[1] + 200)) + [
            f"--screenshot={shot}", "--virtual-time-budget=10000", page.as_uri()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0 or not shot.is_file():
            raise SystemExit(f"chromium failed ({r.returncode}): {r.stderr[-2000:]}")
        from PIL import Image

        with Image.open(shot) as im:
            im.crop((0, 0, size[0], size[1])).save(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="a report folder (holding index.html)")
    ap.add_argument("--out", type=Path, default=None, help="PNG to write (default: REPORT/screenshot.png)")
    ap.add_argument("--size", default="1280,800", help="window size WIDTH,HEIGHT")
    ap.add_argument("--chromium", default=None, help="browser executable")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split(","))
    print(screenshot(args.report, args.out, (w, h), args.chromium))


if __name__ == "__main__":
    sys.exit(main())
