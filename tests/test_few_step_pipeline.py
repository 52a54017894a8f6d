"""The few-step samplers through the pipelines (callbacks, conditioning) and the CLI flags."""

import PIL.Image
import pytest
import torch
from diffusers import DDPMScheduler
from hub_layouts import make_ddpm_cifar10_folder, tiny_ddpm_unet

import scorekit
from scorekit.cli import main
from scorekit.pipelines import ScoreSDEInpaintPipeline, ScoreSDEPipeline


def tiny(cls):
    torch.manual_seed(0)
    pipe = cls(unet=tiny_ddpm_unet().eval(), scheduler=DDPMScheduler(variance_type="fixed_large"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("kwargs,nfe", [
    (dict(sampler="dpmsolver++", order=3, time_grid="karras"), 5),
    (dict(sampler="sde-dpmsolver++", time_grid="uniform"), 5),
    (dict(sampler="edm-heun", s_churn=2.0), 9),
    (dict(sampler="dpmsolver++-singlestep", order=2), 2 * 4 + 1),
])
def test_pipeline_runs_few_step_samplers_with_callback(kwargs, nfe):
    pipe, seen = tiny(ScoreSDEPipeline), []

    def callback(p, i, t, tensors):
        seen.append(i)
        return tensors

    out = pipe(batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="pt",
               callback_on_step_end=callback, **kwargs)
    assert out.nfe == nfe and seen == [0, 1, 2, 3] and torch.isfinite(out.images).all()
    x, info = scorekit.sample(pipe.score_fn(), pipe.sde, (2, 3, 8, 8), steps=4,
                              generator=torch.Generator().manual_seed(0), denoise=True, **kwargs)
    torch.testing.assert_close(out.images, ((x + 1) / 2).clamp(0, 1), atol=0, rtol=0)  # same calls: exact


def test_inpainting_with_the_stochastic_few_step_sampler():
    pipe = tiny(ScoreSDEInpaintPipeline)
    image = PIL.Image.new("RGB", (8, 8), (200, 30, 90))
    mask = PIL.Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 4, 8))  # repaint the left half
    out = pipe(image=image, mask_image=mask, num_inference_steps=4, output_type="pt", sampler="sde-dpmsolver++",
               generator=torch.Generator().manual_seed(0))
    known = out.images[:, :, :, 4:]
    expected = torch.tensor([200, 30, 90]).div(255).view(1, 3, 1, 1).expand_as(known)
    torch.testing.assert_close(known, expected, atol=1 / 255, rtol=0)
    assert out.nfe == 5


def test_cli_sampler_order_and_time_grid(tmp_path, capsys):
    model = make_ddpm_cifar10_folder(str(tmp_path / "model"))
    out = tmp_path / "grid.png"
    code = main(["sample", "--model", model, "--sampler", "dpmsolver++", "--order", "3", "--time-grid", "karras",
                 "--steps", "3", "--batch-size", "2", "--out", str(out)])
    assert code == 0 and out.exists() and "NFE 4" in capsys.readouterr().out
