"""Open a report's HTML in a real headless browser (Debian's chromium) and save a screenshot,
to check that the self-contained page renders offline and to look at it.

    apt-get install chromium        # once
    python scripts/screenshot_report.py reports/fcn-variants/report.html -o /tmp/report.png

Exits 1 when no browser is found or the screenshot is blank.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", help="The report.html to open.")
    parser.add_argument("-o", "--output", required=True, help="Screenshot PNG to write.")
    parser.add_argument("--size", default="1400,3000", help="Window width,height in pixels.")
    args = parser.parse_args()
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if browser is None:
        print("screenshot: no chromium found; install it (Debian: apt-get install chromium)", file=sys.stderr)
        return 1
    page = Path(args.html).resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no network, no extensions
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                        f"--window-size={args.size}", f"--screenshot={Path(args.output).resolve()}", page],
                       capture_output=True, timeout=120)
    if not Path(args.output).is_file():
        print(f"screenshot: {browser} wrote nothing", file=sys.stderr)
        return 1
    low, high = Image.open(args.output).convert("L").getextrema()
    if low == high:
        print(f"screenshot: {args.output} is blank", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
