"""Every script in examples/ runs out of the box with a shipped model (tiny settings here) and takes every sampler;
each restoration example (inpaint, colorize, superres, deblur) takes every method; the inpainting grids show the
hole; the README says how to install with plain pip."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from scorekit.cli import main as cli
from scorekit.restoration_methods import METHODS
from scorekit.samplers.registry import sampler_names

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = sampler_names(standalone=True)  # those that need no condition of their own (ddrm: DDRM(observation))
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
# the tiny settings each example runs with (besides --out); defaults otherwise: a shipped model, its own images
TINY = {
    "sample.py": ["--batch-size", "2", "--steps", "2"],
    "class_conditional.py": ["--labels", "3", "--per-class", "2", "--steps", "2"],
    "inpaint.py": ["--num-samples", "2", "--steps", "2"],
    "colorize.py": ["--num-samples", "2", "--steps", "2"],
    "superres.py": ["--num-samples", "2", "--steps", "2"],
    "deblur.py": ["--num-samples", "2", "--steps", "2"],
    "toy_2d.py": ["--train-steps", "4", "--num-samples", "64", "--sample-steps", "3", "--samplers", *SAMPLERS],
}


def run_example(name: str, argv: list[str]):
    main = runpy.run_path(str(ROOT / "examples" / name), run_name="example")["main"]
    return main(argv)


def test_every_example_has_tiny_settings_here():
    assert sorted(TINY) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_out_of_the_box(name, tmp_path, capsys):
    out = tmp_path / "out.png"
    run_example(name, [*TINY[name], "--out", str(out)])
    assert out.exists() and PIL.Image.open(out).size[0] > 0
    assert f"wrote {out}" in capsys.readouterr().out


ADAPTIVE = ("ode", "dpmsolver-adaptive")  # no step count: a loose tolerance keeps them fast here


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_inpaint_example_takes_every_sampler(sampler, tmp_path):
    out = tmp_path / "out.png"
    loose = ["--rtol", "1e-2"] if sampler in ADAPTIVE else []
    run_example("inpaint.py", [*TINY["inpaint.py"], "--sampler", sampler, *loose, "--out", str(out)])
    assert out.exists()


RESTORATION_EXAMPLES = ["inpaint.py", "colorize.py", "superres.py", "deblur.py"]
# NFE per returned sample at --steps 2 (the registry's NFE column): replacement on the shipped models' DPM-Solver++
# made stochastic (sde-dpmsolver++: steps + 1), DPS on predictor-only PC (steps), PiGDM on DDIM and DDRM (steps + 1),
# the particle methods K = 2 times steps + 1
NFE_AT_2_STEPS = {"replacement": 3, "dps": 2, "pigdm": 3, "ddrm": 3, "tds": 6, "mcgdiff": 6}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", RESTORATION_EXAMPLES)
def test_restoration_examples_take_every_method(name, method, tmp_path, capsys):
    out = tmp_path / "out.png"
    particles = ["--num-particles", "2"] if METHODS[method].particles else []
    run_example(name, [*TINY[name], "--method", method, *particles, "--out", str(out)])
    assert out.exists()
    printed = capsys.readouterr().out
    assert f"{method} (" in printed and f"NFE {NFE_AT_2_STEPS[method]} per sample" in printed


@pytest.mark.parametrize("name", ["sample.py", "class_conditional.py", "colorize.py"])
def test_image_examples_offer_every_sampler_and_run_another_one(name, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_example(name, ["--help"])
    offered = re.search(r"--sampler \{([^}]*)\}", capsys.readouterr().out).group(1).split(",")
    assert offered == list(SAMPLERS)
    out = tmp_path / "out.png"
    run_example(name, [*TINY[name], "--sampler", "pc", "--out", str(out)])  # not the model's own dpmsolver++
    assert out.exists()


def test_inpaint_example_with_an_image_and_no_mask_repaints_the_centre(tmp_path, capsys):
    image = tmp_path / "photo.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(image)
    run_example("inpaint.py", ["--image", str(image), "--num-samples", "1", "--steps", "2", "--out",
                               str(tmp_path / "a.png")])
    big = tmp_path / "big.png"
    PIL.Image.fromarray(np.zeros((40, 30, 3), dtype=np.uint8)).save(big)
    with pytest.raises(SystemExit, match="30x40, the model takes 16x16: pass --resize"):
        run_example("inpaint.py", ["--image", str(big), "--steps", "2", "--out", str(tmp_path / "b.png")])
    run_example("inpaint.py", ["--image", str(big), "--resize", "--num-samples", "1", "--steps", "2", "--out",
                               str(tmp_path / "b.png")])


def test_cli_inpaint_grid_marks_the_hole_apart_from_the_padding(tmp_path):
    """The grid's padding is white; the hole used to be white (mask panel) or mid-gray (observation) and merged with
    it and with the photo's own whites and grays. Now both panels show it as a magenta checkerboard."""
    white = tmp_path / "white.png"
    PIL.Image.fromarray(np.full((16, 16, 3), 255, dtype=np.uint8)).save(white)
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[:, 8:] = 255  # the right half, touching the padding
    PIL.Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "grid.png"
    assert cli(["inpaint", "--model", "scorekit/photos", "--image", str(white), "--mask", str(tmp_path / "mask.png"),
                "--num-samples", "1", "--steps", "2", "--out", str(out)]) == 0
    grid = np.asarray(PIL.Image.open(out).convert("RGB")).astype(int)
    padding = grid[0, 0]
    assert tuple(padding) == (255, 255, 255)
    for left in (2, 2 + 16 + 2):  # observation panel, mask panel
        hole = grid[2:18, left + 8:left + 16]
        assert (hole != padding).any(-1).all(), "a hole pixel looks like the padding"
        assert (hole[..., 0] > hole[..., 1] + 100).all() and (hole[..., 2] > hole[..., 1] + 100).all()  # magenta
        assert len({tuple(v) for v in hole.reshape(-1, 3)}) == 2  # a checkerboard of two shades


def test_readme_says_how_to_install_with_plain_pip():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", readme, flags=re.S | re.M)
    two_commands = next(b for b in blocks if re.search(r"^make demo", b, re.M))
    assert re.search(r'pip install -e "?\.\[data\]"?', two_commands), "plain-pip install next to the make commands"
    assert re.search(r"^data = \[", (ROOT / "pyproject.toml").read_text(), re.M)  # the extra exists
