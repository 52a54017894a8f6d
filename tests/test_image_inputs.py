"""Inputs read as the user meant them: one image reader (every PIL mode by its value range, or refused by name) for
every subcommand and pipeline; a mistyped folder says both what is missing locally and on the Hub; an argument of
another pipeline is refused by name."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from hub_layouts import make_ddpm_cifar10_folder

from scorekit.cli import main
from scorekit.image_io import pil_to_array
from scorekit.pipelines import (
    ScoreSDEColorizationPipeline,
    ScoreSDEInpaintPipeline,
    ScoreSDEPipeline,
)

RNG = np.random.default_rng(0)
GRAY16 = RNG.integers(1000, 65536, (8, 8), dtype=np.uint16)  # 16-bit gray, mostly above 255 (PIL's "L" clips it)
RGB8 = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
UNIT = RNG.random((8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_ddpm_cifar10_folder(str(tmp_path_factory.mktemp("inputs") / "model"))


def _opaque(mode: str) -> PIL.Image.Image:
    return PIL.Image.fromarray(RGB8).convert(mode)


# mode -> (image, expected (H, W, C) in [0, 1])
MODES = {
    "1": (PIL.Image.fromarray(UNIT > 0.5), (UNIT > 0.5)[..., None]),
    "L": (PIL.Image.fromarray(RGB8[..., 0]), RGB8[..., :1] / 255),
    "I;16": (PIL.Image.fromarray(GRAY16), GRAY16[..., None] / 65535),
    "F": (PIL.Image.fromarray(UNIT), UNIT[..., None]),
    "RGB": (PIL.Image.fromarray(RGB8), RGB8 / 255),
    "RGBA": (_opaque("RGBA"), RGB8 / 255),
    "LA": (_opaque("LA"), np.asarray(_opaque("L"))[..., None] / 255),
    "P": (_opaque("P"), np.asarray(_opaque("P").convert("RGB")) / 255),
    "CMYK": (_opaque("CMYK"), np.asarray(_opaque("CMYK").convert("RGB")) / 255),
}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_is_read_by_its_value_range(mode):
    image, expected = MODES[mode]
    assert image.mode == mode
    np.testing.assert_allclose(pil_to_array(image), expected, atol=1e-6)  # float32 of v / 255 or v / 65535


@pytest.mark.parametrize("image, message", [
    (PIL.Image.fromarray(GRAY16.astype(np.int32)), "mode 'I' .* no fixed value range"),
    (PIL.Image.fromarray(UNIT * 255), r"mode 'F'.*must lie in \[0, 1\]"),
    (PIL.Image.new("RGBA", (4, 4), (10, 20, 30, 0)), "mode 'RGBA' has 16 transparent pixel"),
])
def test_modes_without_a_meaning_are_refused_by_name(image, message):
    with pytest.raises(ValueError, match=message):
        pil_to_array(image, "image")


def test_a_16_bit_gray_image_conditions_colorization_on_its_own_values(model):
    """PIL's convert("L") / convert("RGB") clip I;16 at 255: the gray target came out ~99 % pure white."""
    pipe = ScoreSDEColorizationPipeline.from_pretrained(model)
    gray = pipe._gray(PIL.Image.fromarray(GRAY16))  # (1, 1, 8, 8) in the model's range [-1, 1]
    expected = torch.from_numpy(GRAY16 / 65535).float() * 2 - 1
    torch.testing.assert_close(gray[0, 0], expected, atol=1e-6, rtol=0)
    assert (gray > 0.99).float().mean() < 0.1


def test_pipelines_read_pil_numpy_and_torch_alike(model):
    pipe = ScoreSDEInpaintPipeline.from_pretrained(model)
    expected = pipe.preprocess(torch.from_numpy(RGB8 / 255).permute(2, 0, 1)[None].float())
    for images in (PIL.Image.fromarray(RGB8), [PIL.Image.fromarray(RGB8).convert("RGBA")], RGB8[None],
                   torch.from_numpy(RGB8).permute(2, 0, 1)[None]):
        torch.testing.assert_close(pipe.preprocess(images), expected, atol=1e-6, rtol=0)  # uint8: / 255
    gray16 = pipe.preprocess(PIL.Image.fromarray(GRAY16))  # gray repeated into the model's 3 channels
    torch.testing.assert_close(gray16[0, 1], torch.from_numpy(GRAY16 / 65535).float() * 2 - 1, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"images: float values must lie in \[0, 1\], got \[\d+, 255\]"):
        pipe.preprocess(torch.from_numpy(RGB8).permute(2, 0, 1)[None].float())  # 0..255 floats: not silently used
    with pytest.raises(ValueError, match="mask_image.*transparent"):
        pipe(image=torch.rand(1, 3, 8, 8), mask_image=PIL.Image.new("LA", (8, 8), (255, 0)), num_inference_steps=1)


def _first_panel(grid_path: str) -> np.ndarray:
    """The first 8x8 image of a grid written with 2-pixel padding, as uint8 (H, W, 3)."""
    return np.asarray(PIL.Image.open(grid_path).convert("RGB"))[2:10, 2:10]


def test_cli_colorize_and_inpaint_read_a_16_bit_png_by_its_range(model, tmp_path):
    image = str(tmp_path / "gray16.png")
    PIL.Image.fromarray(GRAY16).save(image)
    assert PIL.Image.open(image).mode == "I;16"
    expected = np.round(GRAY16 / 65535 * 255)
    out = str(tmp_path / "colorize.png")
    assert main(["colorize", "--model", model, "--image", image, "--num-samples", "1", "--steps", "1",
                 "--sampler", "pc", "--out", out]) == 0
    shown = _first_panel(out).astype(float)  # the gray input the samples were conditioned on
    assert np.abs(shown[..., 0] - expected).max() <= 1
    mask = str(tmp_path / "mask.png")
    PIL.Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(mask)  # keep everything
    out = str(tmp_path / "inpaint.png")
    assert main(["inpaint", "--model", model, "--image", image, "--mask", mask, "--num-samples", "1", "--steps", "1",
                 "--sampler", "pc", "--out", out]) == 0
    assert np.abs(_first_panel(out).astype(float) - expected[..., None]).max() <= 1


def test_a_mistyped_folder_says_no_such_folder_and_no_such_hub_repo(monkeypatch, tmp_path, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network here: the Hub is unreachable
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        ScoreSDEPipeline.from_pretrained("out/digit")
    message = str(info.value)
    assert "no such folder" in message and str(tmp_path / "out" / "digit") in message
    assert "Hub repo id 'out/digit' could not be resolved" in message
    assert main(["sample", "--model", "out/digit", "--out", "g.png"]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "could not be resolved" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(FileNotFoundError, match="no such folder .* not a Hub repo id"):
        ScoreSDEPipeline.from_pretrained("./out/digit")


@pytest.mark.parametrize("name, value", [("guidance_scale", 1.5), ("class_labels", [1]), ("mask_image", None)])
def test_an_argument_of_another_pipeline_is_refused_by_name(model, name, value):
    pipe = ScoreSDEPipeline.from_pretrained(model)
    other = "ScoreSDEInpaintPipeline" if name == "mask_image" else "ScoreSDEClassConditionalPipeline"
    with pytest.raises(ValueError, match=f"ScoreSDEPipeline does not take {name}=.*{other}"):
        pipe(batch_size=1, num_inference_steps=1, **{name: value})


def test_any_other_keyword_is_an_unexpected_keyword(model):
    pipe = ScoreSDEPipeline.from_pretrained(model)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'.*sampler_options"):
        pipe(batch_size=1, num_inference_steps=1, bogus=1)
