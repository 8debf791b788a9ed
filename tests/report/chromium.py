"""Headless Chromium for the report tests: screenshot or DOM dump of a local HTML file, offline.

When Chromium is missing the calling test is skipped, except under CI (CI=true), where that fails:
ci/test.sh installs it there, so its absence means the browser tests silently stopped running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSER_NAMES = ("chromium", "chromium-browser")
TIMEOUT_S = 60
OFFLINE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # any attempt to reach a host fails instead of leaving the box
)


def find_chromium() -> str:
    """The browser's path; skips the test (fails it under CI) when there is none."""
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    message = "headless Chromium not found (install Debian's `chromium` package to run the HTML browser tests)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI must install it (ci/test.sh)")
    pytest.skip(message)


def _run(html: Path, work: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    browser = find_chromium()
    profile = work / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    command = [browser, *OFFLINE_FLAGS, f"--user-data-dir={profile}", *extra, html.resolve().as_uri()]
    try:
        return subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, check=False, env={**os.environ, "HOME": str(work)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"Chromium did not finish within {TIMEOUT_S} s on {html.name}")


def screenshot(html: Path, work: Path, width: int = 1280, height: int = 2000) -> Path:
    """Render `html` and return the PNG Chromium wrote (fails the test when it wrote none)."""
    png = work / (html.stem + ".png")
    done = _run(html, work, f"--screenshot={png}", f"--window-size={width},{height}")
    if not png.is_file() or png.stat().st_size == 0:
        tail = done.stderr.decode(errors="replace")[-2000:]
        pytest.fail(f"Chromium wrote no screenshot of {html.name} (exit {done.returncode}): {tail}")
    return png


def dump_dom(html: Path, work: Path) -> str:
    """The DOM as Chromium parsed it, serialised back to HTML."""
    done = _run(html, work, "--dump-dom")
    dom = done.stdout.decode("utf-8", errors="replace")
    if "<html" not in dom:
        pytest.fail(f"Chromium dumped no DOM for {html.name} (exit {done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")
    return dom


def ink_stats(path: Path) -> tuple[int, float]:
    """(distinct colours, fraction of pixels that are not near-white) of a screenshot."""
    import matplotlib.image
    import numpy

    pixels = matplotlib.image.imread(path)[::2, ::2]  # floats in [0, 1], RGB or RGBA; every 4th pixel is plenty
    rgb = (pixels[..., :3] * 255).round().astype(numpy.uint32).reshape(-1, 3)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    inked = float((rgb.min(axis=1) < 235).mean())
    return len(numpy.unique(packed)), inked
