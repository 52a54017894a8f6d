"""ScoreSDEPipeline (pipelines/pipeline_score_sde.py): diffusers conventions, save/load round trip, Hub-like folders
(DDPM and NCSN++ layouts), every sampler through it."""

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDPMScheduler
from hub_layouts import make_ddpm_cifar10_folder, make_ncsnpp_celebahq_folder, tiny_ddpm_unet

import scorekit
from scorekit import ScoreSDEPipeline
from scorekit.cli import main
from scorekit.pipelines import ScoreSDEInpaintPipeline
from scorekit.schedulers import ScoreSDEODEScheduler, ScoreSDEPCScheduler


@pytest.fixture
def pipe():
    torch.manual_seed(0)
    p = ScoreSDEPipeline(unet=tiny_ddpm_unet().eval(), scheduler=DDPMScheduler(variance_type="fixed_large"))
    p.set_progress_bar_config(disable=True)
    return p


def run(pipe, **kw):
    return pipe(batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(0), **kw)


def test_output_types_and_nfe(pipe):
    out = run(pipe)
    assert isinstance(out.images[0], PIL.Image.Image) and out.images[0].size == (8, 8)
    assert out.nfe == 4 * 2  # reverse diffusion + one Langevin step per time step
    arr = run(pipe, output_type="np").images
    assert arr.shape == (2, 8, 8, 3) and arr.min() >= 0 and arr.max() <= 1
    pt = run(pipe, output_type="pt").images
    assert pt.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), arr, atol=1e-6)
    images, nfe = run(pipe, return_dict=False, sampler="ode", method="euler")
    assert nfe == 4 + 1  # Euler steps + Tweedie denoising


def test_same_seed_same_images_and_generator_list(pipe):
    a, b = run(pipe, output_type="pt").images, run(pipe, output_type="pt").images
    assert torch.equal(a, b)
    # image i depends only on generator i. A batch of 2 and one of 1 run other CPU kernels (other summation orders,
    # and Intel and AMD differ in the last bits), so compare in float64, where those differences are ~1e-16: what
    # remains is the outputs' float32 rounding, at most one float32 ulp of a value in [0, 1] (2**-23). A batch-mate
    # leaking into an image (a batch-mean step size) moves it by ~1e-2.
    pipe.to(dtype=torch.float64)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    out = pipe(batch_size=2, num_inference_steps=3, generator=gens, output_type="pt", corrector="none")
    single = pipe(batch_size=1, num_inference_steps=3, generator=[torch.Generator().manual_seed(2)],
                  output_type="pt", corrector="none")
    torch.testing.assert_close(out.images[1:], single.images, atol=2**-23, rtol=0)


def test_pipeline_equals_functional_sampler(pipe):
    x, info = scorekit.sample(pipe.score_fn(), pipe.sde, (2, 3, 8, 8), steps=4,
                              generator=torch.Generator().manual_seed(0), **pipe.scheduler.sample_kwargs())
    expected = ((x + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(run(pipe, output_type="pt").images, expected, atol=0, rtol=0)  # same calls: exact


def test_clip_sample_clamps_the_denoised_estimate_when_sampling(pipe):
    pipe.scheduler.register_to_config(clip_sample=True)
    clipped = pipe.sampling_score_fn()
    x, t = 50 * torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.full((4,), 0.9)
    alpha, std = (c[:, None, None, None] for c in pipe.sde.marginal_coef(t))
    with torch.no_grad():
        x0 = (x + std**2 * clipped(x, t)) / alpha  # Tweedie estimate of the clipped score
        x0_raw = (x + std**2 * pipe.score_fn()(x, t)) / alpha
    assert x0.abs().max() <= 1 + 1e-3  # float32 rounding of |x| = 50 divided by alpha(0.9) = 0.015
    assert x0_raw.abs().max() > 1.5, "the test point must need clipping"  # score_fn (likelihoods) stays unclipped
    ref, _ = scorekit.sample(clipped, pipe.sde, (2, 3, 8, 8), steps=4, generator=torch.Generator().manual_seed(0),
                             **pipe.scheduler.sample_kwargs())
    torch.testing.assert_close(run(pipe, output_type="pt").images, ((ref + 1) / 2).clamp(0, 1), atol=0, rtol=0)


def test_callback_on_step_end_can_replace_latents(pipe):
    seen = []

    def callback(p, i, t, kwargs):
        seen.append(i)
        return {"latents": torch.zeros_like(kwargs["latents"])}

    out = run(pipe, output_type="pt", sampler="ode", method="euler", denoise=False, callback_on_step_end=callback)
    assert seen == [0, 1, 2, 3]
    assert torch.allclose(out.images, torch.full_like(out.images, 0.5))  # zeros in [-1, 1] map to 0.5


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = ScoreSDEPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.scheduler, ScoreSDEPCScheduler)
    # the same weights (safetensors round-trips them exactly) and the same calls: equal bit for bit on any CPU
    torch.testing.assert_close(run(loaded, output_type="pt").images, run(pipe, output_type="pt").images,
                               atol=0, rtol=0)


@pytest.mark.parametrize("flat", [False, True], ids=["subfolders", "flat"])
def test_ddpm_cifar10_layout_loads_as_vp(tmp_path, flat):
    pipe = ScoreSDEPipeline.from_pretrained(make_ddpm_cifar10_folder(str(tmp_path), flat=flat))
    assert isinstance(pipe.sde, scorekit.VPSDE) and pipe.scheduler.config.prediction_type == "epsilon"
    assert (pipe.sde.beta_min, pipe.sde.beta_max) == (0.1, 20.0)
    pipe.set_progress_bar_config(disable=True)
    assert run(pipe, output_type="np").images.shape == (2, 8, 8, 3)


def test_ncsnpp_layout_loads_as_ve_and_feeds_sigma(tmp_path):
    pipe = ScoreSDEPipeline.from_pretrained(make_ncsnpp_celebahq_folder(str(tmp_path)))
    assert isinstance(pipe.sde, scorekit.VESDE) and pipe.sde.sigma_max == 380.0
    assert pipe.scheduler.config.prediction_type == "sigma" and pipe.scheduler.data_range == (0.0, 1.0)
    fed = []
    pipe.unet.register_forward_pre_hook(lambda m, args: fed.append(args[1].clone()))
    pipe.set_progress_bar_config(disable=True)
    out = run(pipe, output_type="np")
    assert out.images.shape == (2, 8, 8, 3)
    t = torch.linspace(1, 1e-5, 5)[0]
    torch.testing.assert_close(fed[0], pipe.sde.sigma(t).expand(2))  # the Fourier UNet is fed sigma, as float


def test_ode_scheduler_pipeline_and_sampler_override(pipe):
    ode = ScoreSDEPipeline(unet=pipe.unet, scheduler=ScoreSDEODEScheduler.from_config(pipe.scheduler.config))
    ode.set_progress_bar_config(disable=True)
    assert run(ode).nfe == 4 + 1  # the default DPM-Solver++(2M): one evaluation per step, plus the denoising step
    assert run(ode, sampler="ode", method="heun").nfe == 2 * 4 + 1  # Heun: two evaluations per step
    assert run(ode, sampler="ddim").nfe == 4 + 1


def test_bad_pipeline_input(pipe):
    with pytest.raises(ValueError, match="output_type"):
        run(pipe, output_type="jpg")
    with pytest.raises(ValueError, match="sampler"):
        run(pipe, sampler="heun")
    with pytest.raises(ValueError, match="batch_size"):
        pipe(batch_size=0)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(num_inference_steps=0)
    with pytest.raises(ValueError, match="generator"):
        pipe(batch_size=2, generator=[torch.Generator()])
    with pytest.raises(ValueError, match="latents"):
        pipe(batch_size=1, latents=torch.zeros(1, 3, 4, 4))
    with pytest.raises(TypeError, match="scheduler"):
        ScoreSDEPipeline(unet=pipe.unet, scheduler=object())


def test_nan_from_model_is_reported(pipe):
    pipe.unet.register_forward_hook(lambda m, i, o: type(o)(sample=o.sample * float("nan")))
    with pytest.raises(ValueError, match="non-finite"):
        run(pipe)


# --- the few-step samplers through the pipeline (callbacks, conditioning) and the CLI flags ---------------------
def tiny(cls):
    torch.manual_seed(0)
    pipe = cls(unet=tiny_ddpm_unet().eval(), scheduler=DDPMScheduler(variance_type="fixed_large"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("kwargs,nfe", [
    (dict(sampler="dpmsolver++", order=3, time_grid="karras"), 5),
    (dict(sampler="sde-dpmsolver++", time_grid="uniform"), 5),
    (dict(sampler="edm-heun", s_churn=2.0), 9),
    (dict(sampler="dpmsolver++-singlestep", order=2), 4 + 1),  # steps count evaluations, as diffusers' singlestep
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
