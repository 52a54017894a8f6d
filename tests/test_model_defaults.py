"""Fast, good defaults from the model: its scheduler's sampler and steps (DPM-Solver++ at 20 NFE for the shipped
models, not PC at 2000), its recorded guidance scale (1.5 for scorekit/digits), and a stochastic sampler where
replacement conditioning needs fresh noise."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from hub_layouts import make_ddpm_cifar10_folder

from scorekit.cli import main
from scorekit.datasets import photo_patches
from scorekit.pipelines import (
    ScoreSDEClassConditionalPipeline,
    ScoreSDEColorizationPipeline,
    ScoreSDEInpaintPipeline,
    ScoreSDEPipeline,
)
from scorekit.pipelines.model_defaults import replacement_sampler, sampler_defaults


@pytest.fixture(scope="module")
def digits():
    pipe = ScoreSDEClassConditionalPipeline.from_pretrained("scorekit/digits")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name", ["scorekit/digits", "scorekit/photos"])
def test_shipped_models_recommend_dpm_solver_at_20_nfe(name):
    pipe = ScoreSDEPipeline.from_pretrained(name)
    assert sampler_defaults(pipe.scheduler) == ("dpmsolver++", 19)  # + 1 denoising call = 20 NFE
    assert replacement_sampler(pipe.scheduler) == "sde-dpmsolver++"


def test_cli_sample_defaults_to_the_models_sampler(tmp_path, capsys):
    assert main(["sample", "--model", "scorekit/digits", "--batch-size", "2", "--out", str(tmp_path / "g.png")]) == 0
    assert "dpmsolver++ 19 steps, NFE 20," in capsys.readouterr().out  # was PC: 1000 steps, NFE 2000


def test_guidance_scale_defaults_to_the_models_recorded_one(digits):
    assert digits.default_guidance_scale == 1.5  # what the shipped card measured as best
    kwargs = dict(class_labels=[3, 7], num_inference_steps=2, sampler="ddim", output_type="pt")
    default = digits(generator=torch.Generator().manual_seed(0), **kwargs).images
    explicit = digits(guidance_scale=1.5, generator=torch.Generator().manual_seed(0), **kwargs).images
    plain = digits(guidance_scale=1.0, generator=torch.Generator().manual_seed(0), **kwargs).images
    assert torch.equal(default, explicit)  # the same computation, so equal bit for bit
    assert not torch.equal(default, plain)


def test_a_pipeline_without_a_recorded_scale_uses_the_plain_conditional_score(digits):
    rebuilt = ScoreSDEClassConditionalPipeline(unet=digits.unet, scheduler=digits.scheduler)
    assert rebuilt.model_defaults == {} and rebuilt.default_guidance_scale == 1.0


def test_model_defaults_survive_save_and_load(digits, tmp_path):
    digits.save_pretrained(tmp_path / "copy")
    loaded = ScoreSDEClassConditionalPipeline.from_pretrained(tmp_path / "copy")
    assert loaded.model_defaults == digits.model_defaults and loaded.default_guidance_scale == 1.5
    with pytest.raises(ValueError, match="unknown '_scorekit' keys"):
        loaded.model_defaults = {"guidance": 2}


@pytest.mark.parametrize("cls", [ScoreSDEInpaintPipeline, ScoreSDEColorizationPipeline])
def test_replacement_conditioning_defaults_to_a_stochastic_sampler(cls, caplog):
    pipe = cls.from_pretrained("scorekit/photos")
    pipe.set_progress_bar_config(disable=True)
    image = photo_patches("test", 1)
    inputs = dict(image=image, batch_size=2, output_type="pt")
    if cls is ScoreSDEInpaintPipeline:
        inputs["mask_image"] = torch.zeros(1, 1, 16, 16).index_fill_(2, torch.arange(4, 12), 1.0)
    with caplog.at_level(logging.WARNING):
        default = pipe(generator=torch.Generator().manual_seed(0), **inputs)
    assert "deterministic sampler" not in caplog.text
    explicit = pipe(sampler="sde-dpmsolver++", generator=torch.Generator().manual_seed(0), **inputs)
    assert default.nfe == 20 and torch.equal(default.images, explicit.images)
    with caplog.at_level(logging.WARNING):
        pipe(sampler="dpmsolver++", num_inference_steps=2, generator=torch.Generator().manual_seed(0), **inputs)
    assert "deterministic sampler (dpmsolver++)" in caplog.text  # asked for by name: it runs, with a warning


def test_a_stochastic_scheduler_keeps_its_own_sampler(tmp_path):
    pipe = ScoreSDEInpaintPipeline.from_pretrained(make_ddpm_cifar10_folder(str(tmp_path / "m")))
    assert sampler_defaults(pipe.scheduler) == ("pc", 1000) and replacement_sampler(pipe.scheduler) is None


@pytest.mark.parametrize("command", ["inpaint", "colorize"])
def test_cli_inpaint_and_colorize_default_to_20_nfe(command, tmp_path, capsys):
    from torchvision.utils import save_image

    image = str(tmp_path / "patch.png")
    save_image(photo_patches("test", 1), image)
    mask = str(tmp_path / "mask.png")
    save_image(torch.zeros(1, 1, 16, 16).index_fill_(3, torch.arange(8), 1.0), mask)
    extra = ["--mask", mask] if command == "inpaint" else []
    assert main([command, "--model", "scorekit/photos", "--image", image, *extra, "--num-samples", "2", "--out",
                 str(tmp_path / "o.png")]) == 0
    assert re.search(r"NFE 20 per sample", capsys.readouterr().out, re.M)  # was PC: 1000 steps + Langevin, NFE 2000


def test_model_cards_recommend_what_the_pipelines_default_to(digits):
    """The card's recommendation reads the same function as the pipelines and the CLI
    (``model_defaults.sampler_defaults``, the registry's steps) and the model's recorded guidance scale."""
    from scorekit.hub import make_model_card, recommended_sampling

    assert recommended_sampling(digits.scheduler, "classifier-free", model_defaults=digits.model_defaults) == {
        "sampler": "dpmsolver++", "num_inference_steps": 19, "guidance_scale": 1.5}
    rebuilt = ScoreSDEClassConditionalPipeline(unet=digits.unet, scheduler=digits.scheduler)
    rebuilt.model_defaults = {"guidance_scale": 2.5}
    card = str(make_model_card(rebuilt, "you/digits"))
    assert "default sampler: `dpmsolver++` with 19 steps" in card and "guidance_scale=2.5" in card
