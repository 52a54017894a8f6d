"""`scorekit demo --quick` end to end on the shipped models, and its index.html in headless Chromium.

Chromium comes from Debian's `chromium` package, which `make test` installs when it is missing (CI runs as root).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import PIL.Image
import pytest

from scorekit.cli import main
from scorekit.cli.demo_html import write_index

FIGURES = ["digits_unconditional.png", "digits_cfg.png", "digits_classifier.png", "digits_inpainting.png",
           "digits_superresolution.png", "photo_inpainting.png", "photo_colorization.png", "photo_deblurring.png"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("headless Chromium is missing: `make test` installs Debian's `chromium` package "
                    "(apt-get install -y chromium)")
    return path


def screenshot(html: str, png: str) -> np.ndarray:
    """Open ``html`` in headless Chromium and return its screenshot as an (H, W, 3) uint8 array."""
    cmd = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--allow-file-access-from-files", f"--screenshot={png}", "--window-size=1000,4000", f"file://{html}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return np.asarray(PIL.Image.open(png).convert("RGB"))


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_demo_writes_every_part(demo_dir, capsys):
    for name in FIGURES + ["summary.json", "index.html"]:
        assert (demo_dir / name).is_file(), name
    summary = json.loads((demo_dir / "summary.json").read_text())
    assert summary["quick"] is True and summary["wall_seconds"] > 0
    assert 0 < summary["bits_per_dim"] < 8 and summary["bits_per_dim_stderr"] > 0
    assert all(part["nfe"] > 0 for part in summary["parts"].values())
    grid = np.asarray(PIL.Image.open(demo_dir / "digits_cfg.png"))
    assert grid.std() > 10, "the class-conditional grid is blank"


@pytest.mark.slow
def test_index_html_shows_every_image_in_chromium(demo_dir, tmp_path):
    page = (demo_dir / "index.html").read_text()
    for name in FIGURES:
        assert f'src="{name}"' in page and "<figcaption>" in page
    shot = screenshot(str(demo_dir / "index.html"), str(tmp_path / "shot.png"))
    blank = screenshot(str(_page_without_images(demo_dir, tmp_path)), str(tmp_path / "blank.png"))
    # the images render: the page with them differs from the same page with empty figures over a large area
    differs = (np.abs(shot.astype(int) - blank.astype(int)).sum(-1) > 30).mean()
    assert differs > 0.05, f"only {differs:.3f} of the screenshot changed with the images in place"


def _page_without_images(demo_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in FIGURES:
        PIL.Image.new("RGB", (1, 1), "white").save(empty / name)
    figures = [{"file": name, "caption": "placeholder"} for name in FIGURES]
    return write_index(str(empty), figures, [("wall time", "-")])
