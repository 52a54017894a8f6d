"""ScoreSDERestorationPipeline: one entry point for y = A x + sigma_y e with every method; the inpainting and
colorization presets over it; the item-7 input errors, each raised before the first network evaluation."""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from hub_layouts import tiny_ddpm_unet

import scorekit
from scorekit.conditioning import (
    DDRM,
    DPS,
    TDS,
    Blur,
    Downsample,
    Gray,
    Mask,
    Matrix,
    MCGdiff,
    Observation,
    PiGDM,
    Replacement,
    gaussian_kernel,
)
from scorekit.pipelines import (
    ScoreSDEColorizationPipeline,
    ScoreSDEInpaintPipeline,
    ScoreSDEPipeline,
    ScoreSDERestorationOutput,
    ScoreSDERestorationPipeline,
)
from scorekit.restoration_methods import METHODS
from scorekit.schedulers import ScoreSDEODEScheduler

SHAPE = (3, 8, 8)


def tiny(cls=ScoreSDERestorationPipeline, unet=None):
    """A tiny VP epsilon model under the shipped models' scheduler (DPM-Solver++ on the logSNR grid)."""
    torch.manual_seed(0)
    scheduler = ScoreSDEODEScheduler.from_config(DDPMScheduler().config)
    pipe = cls(unet=(unet or tiny_ddpm_unet()).eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def counted(pipe) -> list:
    """A list that grows by one at every UNet call of ``pipe``."""
    calls: list = []
    pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls


def truth(batch=1, seed=0) -> torch.Tensor:
    return torch.rand(batch, *SHAPE, generator=torch.Generator().manual_seed(seed))  # in [0, 1]


def low_res_observation(noise=0.0):
    op = Downsample(SHAPE, 2)
    y = op(2 * truth() - 1)  # the model's range is [-1, 1]
    return op, y + noise * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))


# method -> (condition class, the sampler and settings the pipeline must run it with by default, method_options)
EXPECTED = {
    "replacement": (Replacement, dict(sampler="sde-dpmsolver++"), {}),  # the model's dpmsolver++ made stochastic
    "dps": (DPS, dict(sampler="pc", predictor="ancestral_sampling", corrector="none"), {"scale": 0.5}),
    "pigdm": (PiGDM, dict(sampler="ddim", eta=1.0), {}),
    "ddrm": (DDRM, dict(sampler="ddrm"), {"eta": 0.5}),
    "tds": (TDS, dict(sampler="tds", num_particles=3), {}),
    "mcgdiff": (MCGdiff, dict(sampler="mcgdiff", num_particles=3), {}),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_is_its_condition_with_its_sampler(method):
    """The pipeline's images are exactly scorekit.sample's, with the clipped score it samples, the method's condition
    and default sampler (same network calls, same draws), and its NFE is the run's (times K per returned sample for
    the particle methods)."""
    assert set(EXPECTED) == set(METHODS)
    cls, settings, options = EXPECTED[method]
    pipe = tiny()
    op, y = low_res_observation(noise=0.05)
    particles = {"num_particles": settings["num_particles"]} if "num_particles" in settings else {}
    out = pipe(observation=y, operator=op, noise_std=0.05, method=method, batch_size=2, num_inference_steps=3,
               generator=torch.Generator().manual_seed(0), output_type="pt", method_options=options, **particles)
    condition = cls(Observation(op, y, 0.05), **options)
    x, info = scorekit.sample(pipe.sampling_score_fn(), pipe.sde, (2, *SHAPE), steps=3, condition=condition,
                              generator=torch.Generator().manual_seed(0), **settings)
    assert isinstance(out, ScoreSDERestorationOutput) and out.sampler == settings["sampler"]
    torch.testing.assert_close(out.images, ((x + 1) / 2).clamp(0, 1), atol=0, rtol=0)  # same calls: exact
    assert out.nfe == info["nfe"]
    k = settings.get("num_particles", 1)
    assert out.nfe_per_sample == k * out.nfe
    assert (out.particles is None) == (k == 1)


def test_pigdm_on_the_unclipped_shipped_digits_model_stays_finite():
    """scorekit/digits-unconditional ships unclipped (clip_sample biases coarse deterministic sampling); through its
    unclipped denoised estimate PiGDM's likelihood gradient was non-finite at t ~ 0.93 of a 100-step run, from
    `scorekit restore` too. The restoration pipeline clips the estimate whatever the scheduler says."""
    pipe = ScoreSDERestorationPipeline.from_pretrained("scorekit/digits-unconditional")
    pipe.set_progress_bar_config(disable=True)
    truth = torch.zeros(1, 1, 8, 8)
    truth[..., 2:6, 3:5] = 1
    op = Mask(torch.arange(8)[:, None].expand(8, 8)[None] < 4, (1, 8, 8))  # the top half observed
    out = pipe(observation=op(pipe.to_model_range(truth, torch.float32)), operator=op, method="pigdm",
               num_inference_steps=100, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert torch.isfinite(out.images).all()


def test_noise_std_may_be_a_one_element_tensor():
    pipe = tiny()
    op, y = low_res_observation(noise=0.05)
    runs = [pipe(observation=y, operator=op, noise_std=s, method="ddrm", batch_size=2, num_inference_steps=3,
                 generator=torch.Generator().manual_seed(0), output_type="pt").images
            for s in (0.05, torch.tensor(0.05, dtype=torch.float64))]
    torch.testing.assert_close(runs[0], runs[1], atol=0, rtol=0)
    with pytest.raises(ValueError, match="noise_std must be a finite number >= 0"):
        pipe(observation=y, operator=op, noise_std=torch.tensor([0.05, 0.1]), method="ddrm")


@pytest.mark.parametrize("method", ["replacement", "ddrm", "mcgdiff"])
def test_noiseless_exact_methods_reproduce_the_observation(method):
    """Replacement, DDRM (eta_b = 1) and MCGdiff return samples with A x = y exactly when y is noiseless. In float64
    the SVD's transforms round to ~1e-16 relative; the untrained network's samples reach |x| ~ 1e2: 1e-10 is ample."""
    pipe = tiny().to(torch.float64)
    pipe.postprocess = lambda x, output_type: x  # the samples in the model's range, before the [0, 1] clamp
    op, y = low_res_observation()
    out = pipe(observation=y, operator=op, method=method, batch_size=2, num_inference_steps=3,
               generator=torch.Generator().manual_seed(0), **({"num_particles": 2} if method == "mcgdiff" else {}))
    assert out.images.dtype == torch.float64
    torch.testing.assert_close(op(out.images), y.double().expand(2, *op.out_shape), atol=1e-10, rtol=0)
    assert out.images.std(0).max() > 1e-3  # the null space is sampled, not copied


def test_observation_as_images_in_unit_range_equals_the_model_range_tensor():
    """``y`` given as images in [0, 1] (numpy, PIL, gray for the Gray operator) is mapped to the model's range as
    ``lo A 1 + (hi - lo) y_01``: the same observation as ``A x`` of the image in [-1, 1] (float32 rounding)."""
    pipe = tiny()
    x01 = truth()
    for op in (Downsample(SHAPE, 2), Blur(gaussian_kernel(1.0, 3), SHAPE), Mask(torch.rand(1, 8, 8) > 0.5, SHAPE)):
        want = op(2 * x01 - 1)
        y01 = op(x01).clamp(0, 1).permute(0, 2, 3, 1).numpy()  # what a user holds: the degraded image in [0, 1]
        got = pipe.observation(y01, op, None).y
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    rgb = (x01[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    got = pipe.observation(PIL.Image.fromarray(rgb), Gray(SHAPE), 0.0).y  # a colour PIL image: its mean is observed
    want = 2 * torch.from_numpy(rgb).float().div(255).mean(-1)[None, None] - 1
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_particles_come_back_with_their_weights():
    pipe = tiny()
    op, y = low_res_observation(noise=0.05)
    out = pipe(observation=y, operator=op, noise_std=0.05, method="mcgdiff", num_particles=4, batch_size=2,
               num_inference_steps=3, return_particles=True, output_type="np",
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (2 * 4, 8, 8, 3) and out.nfe == 4 and out.nfe_per_sample == 16
    weights = out.particles["log_weights"]
    assert weights.shape == (2, 4)
    torch.testing.assert_close(weights.logsumexp(1), torch.zeros(2, dtype=weights.dtype), atol=1e-6, rtol=0)
    assert out.particles["ess"].shape == (4, 2) and out.particles["num_particles"] == 4
    images, nfe = pipe(observation=y, operator=op, noise_std=0.05, method="tds", num_particles=2, batch_size=2,
                       num_inference_steps=2, return_dict=False, output_type="pt")
    assert images.shape == (2, *SHAPE) and nfe == 3
    with pytest.raises(ValueError, match="return_particles=True is for ScoreSDERestorationPipeline"):
        ScoreSDEPipeline(unet=pipe.unet, scheduler=pipe.scheduler)(
            num_inference_steps=2, sampler="tds", condition=TDS(Observation(op, y)), return_particles=True)


def test_gradient_methods_run_inside_no_grad_and_the_callback_sees_every_step():
    pipe = tiny()
    op, y = low_res_observation()
    seen = []

    def callback(p, i, t, kwargs):
        seen.append((i, tuple(kwargs["latents"].shape)))
        return {}

    for method in ("dps", "pigdm", "tds"):
        seen.clear()
        with torch.no_grad():
            out = pipe(observation=y, operator=op, method=method, num_inference_steps=2, output_type="pt",
                       callback_on_step_end=callback, **({"num_particles": 3} if method == "tds" else {}))
        rows = 3 if method == "tds" else 1  # the callback sees the B * K particles
        assert seen == [(0, (rows, *SHAPE)), (1, (rows, *SHAPE))] and torch.isfinite(out.images).all()


@pytest.mark.parametrize("method, name", [("dps", "DPS"), ("pigdm", "PiGDM"), ("tds", "TDS")])
def test_gradient_methods_refuse_inference_mode_by_name_before_any_work(method, name):
    pipe = tiny()
    calls = counted(pipe)
    op, y = low_res_observation()
    with torch.inference_mode(), pytest.raises(RuntimeError, match=f"{name} takes gradients.*torch.no_grad"):
        pipe(observation=y, operator=op, noise_std=0.02, method=method, num_inference_steps=2)
    assert calls == []


def test_a_class_conditional_unet_restores_with_its_null_label(tmp_path):
    """A pipeline folder of a class-conditional UNet with a classifier loads as a restoration pipeline and restores
    with the unconditional score s(x, t, null) (the last class embedding)."""
    from scorekit.models import TimeClassifierModel
    from scorekit.pipelines import ScoreSDEClassConditionalPipeline

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       num_class_embeds=4)  # 3 classes and the null label
    classifier = TimeClassifierModel(in_channels=3, sample_size=8, num_classes=3, block_out_channels=(8,),
                                     time_embedding_type="positional", norm_num_groups=4)
    ScoreSDEClassConditionalPipeline(unet=unet, scheduler=DDPMScheduler(), classifier=classifier).save_pretrained(
        tmp_path / "model")
    pipe = ScoreSDERestorationPipeline.from_pretrained(tmp_path / "model")
    pipe.set_progress_bar_config(disable=True)
    calls = []
    original = pipe.unet.forward

    def spy(x, t, class_labels=None, **kw):
        calls.append(class_labels)
        return original(x, t, class_labels=class_labels, **kw)

    pipe.unet.forward = spy
    op, y = low_res_observation()
    out = pipe(observation=y, operator=op, method="ddrm", batch_size=2, num_inference_steps=2, output_type="pt")
    assert out.images.shape == (2, *SHAPE) and len(calls) == 3
    assert all(torch.equal(labels, torch.full((2,), 3)) for labels in calls)  # the null label, K = 3 classes


def test_shipped_digits_model_restores_by_short_name():
    pipe = ScoreSDERestorationPipeline.from_pretrained("scorekit/digits")
    pipe.set_progress_bar_config(disable=True)
    op = Downsample((1, 8, 8), 2)
    low = np.full((1, 4, 4, 1), 0.5, dtype=np.float32)  # a gray 4x4 image in [0, 1]
    out = pipe(observation=low, operator=op, method="mcgdiff", num_particles=2, num_inference_steps=2,
               output_type="pt", generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 1, 8, 8) and out.nfe_per_sample == 2 * out.nfe


@pytest.mark.parametrize("method", ["replacement", "ddrm", "mcgdiff"])
def test_inpaint_preset_takes_every_method_and_keeps_known_pixels(method):
    pipe = tiny(ScoreSDEInpaintPipeline)
    image = truth()
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1  # white = repaint
    out = pipe(image=image, mask_image=mask, batch_size=2, method=method, num_inference_steps=3, output_type="pt",
               generator=torch.Generator().manual_seed(0), **({"num_particles": 2} if method == "mcgdiff" else {}))
    known = mask[0, 0] == 0
    torch.testing.assert_close(out.images[..., known], image[..., known].expand(2, 3, -1), atol=1e-5, rtol=0)
    assert isinstance(out, ScoreSDERestorationOutput) and out.sampler == EXPECTED[method][1]["sampler"]


def test_inpaint_preset_takes_one_mask_per_sample_with_one_image():
    """A batch of masks with a single image: one mask per sample, the image shared (PIL masks as a list too)."""
    pipe = tiny(ScoreSDEInpaintPipeline)
    image = truth()
    hole = np.zeros((8, 8), dtype=np.uint8)
    hole[2:6, 2:6] = 255  # white = repaint
    masks = [PIL.Image.fromarray(hole), PIL.Image.fromarray(np.zeros((8, 8), dtype=np.uint8))]  # the 2nd keeps all
    for batch_size in (2, None):
        out = pipe(image=image, mask_image=masks, batch_size=batch_size, num_inference_steps=3, output_type="pt",
                   generator=torch.Generator().manual_seed(0))
        known = torch.from_numpy(hole == 0)
        assert out.images.shape == (2, *SHAPE)
        torch.testing.assert_close(out.images[0][..., known], image[0][..., known], atol=1e-5, rtol=0)
        torch.testing.assert_close(out.images[1], image[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("images, masks, batch_size, message", [
    (1, 2, 3, r"mask_image has 2 masks; expected 1 or batch_size=3"),
    (2, 3, None, r"mask_image has 3 masks but image has 2 images; expected 1 mask or one per image"),
])
def test_inpaint_preset_names_a_mask_count_that_fits_neither(images, masks, batch_size, message):
    pipe = tiny(ScoreSDEInpaintPipeline)
    calls = counted(pipe)
    with pytest.raises(ValueError, match=message):
        pipe(image=truth(images), mask_image=torch.zeros(masks, 1, 8, 8), batch_size=batch_size,
             num_inference_steps=2)
    assert calls == []


def test_colorization_preset_with_a_particle_method_keeps_the_gray_image():
    pipe = tiny(ScoreSDEColorizationPipeline)
    pipe.postprocess = lambda x, output_type: x
    gray = truth()[:, :1]
    out = pipe(image=gray, method="mcgdiff", num_particles=2, batch_size=2, num_inference_steps=3,
               generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.images.mean(1, keepdim=True), (2 * gray - 1).expand(2, 1, 8, 8), atol=1e-5,
                               rtol=0)
    assert out.nfe_per_sample == 2 * out.nfe


def test_method_table_follows_the_condition_classes():
    for spec in METHODS.values():
        module, _, name = spec.condition.partition(":")
        cls = getattr(importlib.import_module(module), name)
        params = list(inspect.signature(cls).parameters)
        assert set(spec.options) <= set(params[1:]), spec.name
        assert spec.particles == (spec.name in ("tds", "mcgdiff"))


# --- item 7: every bad input is a clear error naming the argument, before any network evaluation --------------------
def composed():
    return Downsample(SHAPE, 2) @ Blur(gaussian_kernel(1.0, 3), SHAPE)  # no SVD


BAD = {
    "operator_for_another_size": (dict(operator=Downsample((3, 16, 16), 2), observation=torch.zeros(1, 3, 8, 8)),
                                  ValueError, r"operator.in_shape = \(3, 16, 16\) but the model's samples are"),
    "operator_of_another_kind": (dict(operator="downsample", observation=torch.zeros(1, 3, 4, 4)), TypeError,
                                 "operator must be a scorekit LinearOperator"),
    "y_of_the_wrong_shape": (dict(observation=torch.zeros(1, 3, 8, 8)), ValueError,
                             r"observation has shape \(1, 3, 8, 8\) but operator.out_shape = \(3, 4, 4\)"),
    "y_batch_against_batch_size": (dict(observation=torch.zeros(2, 3, 4, 4), batch_size=3), ValueError,
                                   "observation has a batch of 2 but batch_size=3"),
    "images_of_the_wrong_size": (dict(observation=np.zeros((1, 8, 8, 3), dtype=np.float32)), ValueError,
                                 r"observation has shape \(1, 3, 8, 8\) but operator.out_shape"),
    "images_for_a_matrix": (dict(operator=Matrix(torch.ones(2, 192), SHAPE), observation=np.zeros((4, 4, 3))),
                            ValueError, "observation given as images needs an operator whose output is an image"),
    "negative_noise": (dict(noise_std=-0.1), ValueError, r"noise_std must be a finite number >= 0.*got -0.1"),
    "zero_particles": (dict(method="mcgdiff", num_particles=0), ValueError,
                       "num_particles must be an integer >= 1, got 0"),
    "particles_without_particles": (dict(method="dps", num_particles=4), ValueError,
                                    "num_particles=4 is for the particle methods 'tds' and 'mcgdiff'"),
    "replacement_without_svd": (dict(operator=composed()), ValueError,
                                "method='replacement' needs an operator with an SVD, but operator=ComposedOperator"),
    "pigdm_without_svd": (dict(operator=composed(), method="pigdm"), ValueError, "method='pigdm' needs an operator"),
    "ddrm_without_svd": (dict(operator=composed(), method="ddrm"), ValueError, "method='ddrm' needs an operator"),
    "mcgdiff_without_svd": (dict(operator=composed(), method="mcgdiff"), ValueError, "method='mcgdiff' needs an"),
    "unknown_method": (dict(method="bogus"), ValueError, "method='bogus' is not a restoration method"),
    "ode_method_as_method": (dict(method="euler"), ValueError, r"sampler_options=\{'method': 'euler'\}"),
    "ddrm_with_another_sampler": (dict(method="ddrm", sampler="pc"), ValueError,
                                  "method='ddrm' runs as its own sampler 'ddrm'; sampler='pc' cannot run it"),
    "a_particle_sampler_for_dps": (dict(method="dps", sampler="tds"), ValueError,
                                   "sampler='tds' is the sampler of method='tds'"),
    "unknown_method_option": (dict(method="dps", method_options={"eta": 1.0}), ValueError,
                              r"method_options \['eta'\] are not settings of method='dps'; its settings are "
                              r"\['scale'\]"),
    "a_setting_the_sampler_lacks": (dict(method="ddrm", snr=0.1), ValueError,
                                    "snr=0.1 is not a setting of sampler='ddrm'"),
    "a_condition_of_ones_own": (dict(condition=DPS(Observation(Downsample(SHAPE, 2), torch.zeros(1, 3, 4, 4)))),
                                ValueError, "builds its condition from method="),
    "observation_and_operator": (dict(observation=Observation(Downsample(SHAPE, 2), torch.zeros(1, 3, 4, 4))),
                                 ValueError, "observation is an Observation"),  # with operator= as well
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_by_name_before_any_work(case):
    kwargs, error, message = BAD[case]
    pipe = tiny()
    calls = counted(pipe)
    defaults = dict(observation=torch.zeros(1, 3, 4, 4), operator=Downsample(SHAPE, 2), num_inference_steps=2)
    call = {**defaults, **kwargs}
    with pytest.raises(error, match=message):
        pipe(**call)
    assert calls == []


def test_preset_errors_name_their_own_arguments():
    pipe = tiny(ScoreSDEInpaintPipeline)
    calls = counted(pipe)
    masks = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="image has a batch of 2 but batch_size=3"):
        pipe(image=truth(2), mask_image=masks, batch_size=3, num_inference_steps=2)
    with pytest.raises(ValueError, match="per-sample operator"):  # K particles cannot share per-sample masks
        pipe(image=truth(2), mask_image=masks, method="tds", num_inference_steps=2)
    with pytest.raises(ValueError, match="noise_std must be"):
        pipe(image=truth(), mask_image=masks[:1], noise_std=-1.0, num_inference_steps=2)
    assert calls == []


def test_blur_kernels_sum_to_one_and_keep_constants():
    """The deblurring kernels are normalized and symmetric, so Blur keeps a constant image (A 1 = 1, to float64
    rounding), which the [0, 1] -> model-range map of image observations relies on only through A 1 itself."""
    from scorekit.conditioning import box_kernel

    for kernel in (gaussian_kernel(1.0, 5), gaussian_kernel(0.7, 4), box_kernel(3)):
        assert abs(float(kernel.sum()) - 1) < 1e-15 and torch.equal(kernel, kernel.flip(0, 1))
        ones = torch.ones(1, *SHAPE, dtype=torch.float64)
        torch.testing.assert_close(Blur(kernel, SHAPE)(ones), ones, atol=1e-14, rtol=0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        gaussian_kernel(0.0, 5)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        box_kernel(0)
