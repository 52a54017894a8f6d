"""Controllable-generation pipelines and the likelihood / latent pipeline methods, on tiny models."""

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDPMScheduler
from hub_layouts import tiny_ddpm_unet

from scorekit.conditioning import Downsample
from scorekit.models import TimeClassifierModel
from scorekit.pipelines import (
    ScoreSDEClassConditionalPipeline,
    ScoreSDEColorizationPipeline,
    ScoreSDEInpaintPipeline,
    ScoreSDEPipeline,
    ScoreSDERestorationPipeline,
)


def tiny(cls, **components):
    torch.manual_seed(0)
    pipe = cls(unet=tiny_ddpm_unet().eval(), scheduler=DDPMScheduler(variance_type="fixed_large"), **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_classifier():
    torch.manual_seed(1)
    return TimeClassifierModel(in_channels=3, sample_size=8, num_classes=4, block_out_channels=(8, 16),
                               time_embedding_type="positional", norm_num_groups=4).eval()


def photo(size=8, seed=0):
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


KW = dict(num_inference_steps=3, output_type="pt")


def test_class_conditional_pipeline_runs_and_round_trips(tmp_path):
    pipe = tiny(ScoreSDEClassConditionalPipeline, classifier=tiny_classifier())
    out = pipe(class_labels=[0, 3], guidance_scale=2.0, generator=torch.Generator().manual_seed(0), **KW)
    assert out.images.shape == (2, 3, 8, 8) and out.nfe == 3 * 2
    unguided = pipe(class_labels=[0, 3], guidance_scale=0.0, generator=torch.Generator().manual_seed(0), **KW)
    plain = ScoreSDEPipeline(unet=pipe.unet, scheduler=pipe.scheduler)
    plain.set_progress_bar_config(disable=True)
    expected = plain(batch_size=2, generator=torch.Generator().manual_seed(0), **KW).images
    torch.testing.assert_close(unguided.images, expected, atol=0, rtol=0)  # scale 0: the same UNet calls, exact
    assert not torch.allclose(out.images, unguided.images)  # the classifier gradient moves the samples
    pipe.save_pretrained(tmp_path)
    loaded = ScoreSDEClassConditionalPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.classifier, TimeClassifierModel)
    loaded.set_progress_bar_config(disable=True)
    again = loaded(class_labels=[0, 3], guidance_scale=2.0, generator=torch.Generator().manual_seed(0), **KW)
    torch.testing.assert_close(again.images, out.images, atol=0, rtol=0)  # same weights, same calls: exact


def test_class_conditional_bad_labels():
    pipe = tiny(ScoreSDEClassConditionalPipeline, classifier=tiny_classifier())
    with pytest.raises(ValueError, match="labels"):
        pipe(class_labels=[0, 4], **KW)  # the classifier has 4 classes
    with pytest.raises(ValueError, match="labels"):
        pipe(class_labels=[0, 1, 2], batch_size=2, **KW)


def test_inpaint_pipeline_keeps_known_pixels():
    pipe = tiny(ScoreSDEInpaintPipeline)
    image = photo()
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:6, 2:6] = 255  # white = repaint
    out = pipe(image=image, mask_image=PIL.Image.fromarray(mask), batch_size=3,
               generator=torch.Generator().manual_seed(0), **KW)
    assert out.images.shape == (3, 3, 8, 8)
    known = torch.from_numpy(mask == 0)
    expected = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    for img in out.images:
        torch.testing.assert_close(img[:, known], expected[:, known], atol=1e-6, rtol=0)
    assert not torch.allclose(out.images[0][:, ~known], out.images[1][:, ~known])  # the hole is sampled


def test_inpaint_pipeline_bad_input():
    pipe = tiny(ScoreSDEInpaintPipeline)
    with pytest.raises(ValueError, match="sample size"):
        pipe(image=photo(16), mask_image=PIL.Image.new("L", (16, 16)), **KW)
    with pytest.raises(ValueError, match="binary"):
        pipe(image=photo(), mask_image=torch.full((1, 1, 8, 8), 0.3) + torch.eye(8) * 0.2, **KW)
    with pytest.raises(ValueError, match="mask_image"):
        pipe(image=photo(), mask_image=torch.zeros(1, 1, 4, 4), **KW)


def test_colorization_pipeline_matches_gray():
    pipe = tiny(ScoreSDEColorizationPipeline)
    pipe.postprocess = lambda x, output_type: x  # look at the samples in model space, before the [0, 1] clamp
    image = photo()
    out = pipe(image=image, batch_size=2, generator=torch.Generator().manual_seed(0), **KW)
    gray = torch.from_numpy(np.array(image)).float().mean(-1) / 255  # gray = mean of R, G, B
    torch.testing.assert_close(out.images.mean(1), (2 * gray - 1).expand(2, 8, 8), atol=1e-5, rtol=0)
    assert out.images.std(1).min() > 0  # the chroma is sampled, not zero
    rgb = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    out_t = pipe(image=rgb[None], batch_size=1, generator=torch.Generator().manual_seed(0), **KW)
    torch.testing.assert_close(out_t.images.mean(1), 2 * rgb.mean(0)[None] - 1, atol=1e-5, rtol=0)  # RGB -> mean


def test_colorization_needs_rgb_model():
    torch.manual_seed(0)
    pipe = ScoreSDEColorizationPipeline(unet=tiny_ddpm_unet(channels=1), scheduler=DDPMScheduler())
    with pytest.raises(ValueError, match="in_channels"):
        pipe(image=photo(), **KW)


def test_likelihood_and_latent_methods():
    pipe = tiny(ScoreSDEPipeline)
    images = [photo(seed=1), photo(seed=2)]
    out = pipe.log_likelihood(images, rtol=1e-3, atol=1e-3, generator=torch.Generator().manual_seed(0))
    assert out.bits_per_dim.shape == (2,) and torch.isfinite(out.bits_per_dim).all() and out.nfe > 0
    arrays = np.stack([np.asarray(im) for im in images]).astype(np.float32) / 255
    again = pipe.log_likelihood(arrays, rtol=1e-3, atol=1e-3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.bits_per_dim, out.bits_per_dim, atol=0, rtol=0)  # PIL = numpy: same solve
    z = pipe.encode(images, rtol=1e-3, atol=1e-3)
    assert z.shape == (2, 3, 8, 8)
    decoded = pipe.decode(z, output_type="np", rtol=1e-3, atol=1e-3)
    assert decoded.images.shape == (2, 8, 8, 3) and decoded.nfe > 0


# --- one image, one seed --------------------------------------------------------------------------------------------
# In float64 the UNet's output for an image differs between batch compositions only by rounding (unit roundoff
# 1.1e-16, a few hundred operations per output: <= ~1e-13 relative per call), amplified by the samplers' coefficients
# (<= sigma(T) = std / alpha ~ 150 for this VP SDE) over <= 10 calls: below 1e-9 on [0, 1] images. Coupling through
# the batch (the paper's batch-mean Langevin step) moves images by 1e-3 and more.
BATCH_TOL = 1e-9
PIPELINE_CASES = {
    "unconditional-pc": (ScoreSDEPipeline, {}, dict(sampler="pc")),
    "unconditional-sde-dpm": (ScoreSDEPipeline, {}, dict(sampler="sde-dpmsolver++")),
    "unconditional-edm-churn": (ScoreSDEPipeline, {}, dict(sampler="edm-heun", s_churn=20.0)),
    "unconditional-ddim-eta": (ScoreSDEPipeline, {}, dict(sampler="ddim", eta=1.0)),
    "classifier-guided": (ScoreSDEClassConditionalPipeline, {"classifier": "classifier"}, dict(guidance_scale=2.0)),
    "inpaint": (ScoreSDEInpaintPipeline, {}, dict(sampler="pc")),
    "colorize": (ScoreSDEColorizationPipeline, {}, dict(sampler="sde-dpmsolver++")),
    **{f"restore-{m}": (ScoreSDERestorationPipeline, {}, dict(method=m, **({"num_particles": 2} if k else {})))
       for m, k in (("replacement", 0), ("dps", 0), ("pigdm", 0), ("ddrm", 0), ("tds", 1), ("mcgdiff", 1))},
}


def _inputs(name: str, batch: list[int]) -> dict:
    if name == "classifier-guided":
        return dict(class_labels=[s % 4 for s in batch])
    if name == "inpaint":
        mask = torch.zeros(1, 1, 8, 8)
        mask[..., :4] = 1
        return dict(image=photo(), mask_image=mask, batch_size=len(batch))
    if name == "colorize":
        return dict(image=photo(), batch_size=len(batch))
    if name.startswith("restore-"):  # noisy 2x super-resolution
        low = torch.linspace(-0.5, 0.5, 48, dtype=torch.float64).reshape(1, 3, 4, 4)
        return dict(observation=low, operator=Downsample((3, 8, 8), 2), noise_std=0.05, batch_size=len(batch))
    return dict(batch_size=len(batch))


@pytest.mark.parametrize("name", list(PIPELINE_CASES))
def test_every_pipeline_gives_an_image_alone_as_in_a_batch(name):
    cls, components, kwargs = PIPELINE_CASES[name]
    pipe = tiny(cls, **{k: tiny_classifier() for k in components}).to(torch.float64)

    def images(seeds):
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        return pipe(generator=gens, **_inputs(name, seeds), **KW, **kwargs).images

    batch, alone = images([5, 6, 7]), images([6])
    torch.testing.assert_close(batch[1:2], alone, rtol=0, atol=BATCH_TOL)


def test_batch_mean_langevin_couples_pipeline_images():
    pipe = tiny(ScoreSDEPipeline).to(torch.float64)
    runs = [pipe(batch_size=len(s), generator=[torch.Generator().manual_seed(i) for i in s], snr_norm="batch", **KW,
                 sampler="pc").images for s in ([5, 6, 7], [6])]
    assert (runs[0][1:2] - runs[1]).abs().max() > 1e3 * BATCH_TOL
