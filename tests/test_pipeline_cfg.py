"""Classifier-free guidance in ScoreSDEClassConditionalPipeline, on a tiny class-conditional UNet2DModel."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DModel

import scorekit
from scorekit.models import TimeClassifierModel
from scorekit.pipelines import ScoreSDEClassConditionalPipeline, ScoreSDEPipeline
from scorekit.pipelines.pipeline_score_sde import labelled_unet
from scorekit.pipelines.pipeline_score_sde_conditional import cfg_score_fn
from scorekit.schedulers import ScoreSDEPCScheduler
from scorekit.score import model_score_fn

K = 3  # classes; the UNet has K + 1 embeddings, the last the null label


def tiny_cfg_unet(num_class_embeds=K + 1):
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=num_class_embeds).eval()


def pipe_for(unet, classifier=None):
    pipe = ScoreSDEClassConditionalPipeline(unet=unet, scheduler=ScoreSDEPCScheduler(), classifier=classifier)
    pipe.set_progress_bar_config(disable=True)
    return pipe


KW = dict(num_inference_steps=2, output_type="pt")


def test_cfg_score_is_the_guidance_combination():
    unet, sde = tiny_cfg_unet(), scorekit.VPSDE()
    x, t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0.3, 0.7])
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        s_y = cfg_score_fn(unet, sde, "epsilon", labels, K, 1.0)(x, t)
        s_0 = cfg_score_fn(unet, sde, "epsilon", torch.full((2,), K), K, 1.0)(x, t)
        # w = 0 is the unconditional call itself (one batch of B): equal bit for bit
        torch.testing.assert_close(cfg_score_fn(unet, sde, "epsilon", labels, K, 0.0)(x, t), s_0, atol=0, rtol=0)
        # w = 2.5 runs both halves as one batch of 2 B, whose kernels differ from a batch of B in the last bits (AMD
        # vs Intel too); against the two halves of that very batch the combination is exact
        both = model_score_fn(labelled_unet(unet, torch.cat([labels, torch.full((2,), K)])), sde, "epsilon")
        s_y2, s_02 = both(torch.cat([x, x]), torch.cat([t, t])).chunk(2)
        guided = cfg_score_fn(unet, sde, "epsilon", labels, K, 2.5)(x, t)
        torch.testing.assert_close(guided, s_02 + 2.5 * (s_y2 - s_02), atol=0, rtol=0)
    assert not torch.allclose(s_y, s_0)  # the label changes the score


@pytest.mark.parametrize("scale, batch", [(0.0, 2), (1.0, 2), (2.5, 4)])
def test_trivial_guidance_scales_evaluate_one_half(scale, batch):
    """w = 0 and w = 1 need one of the two scores only: one UNet batch of B, as diffusers skips the doubled batch."""
    unet, sizes = tiny_cfg_unet(), []
    unet.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    x, t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0.3, 0.7])
    with torch.no_grad():
        cfg_score_fn(unet, scorekit.VPSDE(), "epsilon", torch.tensor([0, 2]), K, scale)(x, t)
    assert sizes == [batch]


@pytest.mark.parametrize("sampler", ["pc", "ode", "ddim", "ald"])
def test_cfg_runs_with_every_sampler(sampler):
    pipe = pipe_for(tiny_cfg_unet())
    assert pipe.conditioning == "classifier-free"
    kwargs = dict(method="euler") if sampler == "ode" else {}
    out = pipe(class_labels=[0, 1, 2], guidance_scale=3.0, sampler=sampler, generator=torch.Generator().manual_seed(0),
               **KW, **kwargs)
    assert out.images.shape == (3, 1, 8, 8) and torch.isfinite(out.images).all()


def test_guidance_scale_zero_is_the_unconditional_pipeline():
    unet = tiny_cfg_unet()
    pipe = pipe_for(unet)
    g = torch.Generator().manual_seed(0)
    unguided = pipe(class_labels=[0, 1], guidance_scale=0.0, sampler="ddim", generator=g, **KW).images
    plain = ScoreSDEPipeline(unet=unet, scheduler=pipe.scheduler)
    plain.set_progress_bar_config(disable=True)
    expected = plain(batch_size=2, sampler="ddim", generator=torch.Generator().manual_seed(0), **KW).images
    # w = 0 evaluates only the unconditional half (one batch of B, as diffusers does): the very same network calls
    # as the plain pipeline, so the images agree bit for bit on any CPU (a doubled batch would change the kernels)
    torch.testing.assert_close(unguided, expected, atol=0, rtol=0)
    cond = pipe(class_labels=[0, 1], guidance_scale=1.0, sampler="ddim", generator=torch.Generator().manual_seed(0),
                **KW).images
    assert not torch.allclose(cond, unguided)


def test_cfg_composes_with_inpainting():
    pipe = pipe_for(tiny_cfg_unet())
    image = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    known = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    known[..., :4] = True
    out = pipe(class_labels=[1, 2], guidance_scale=2.0, condition=scorekit.Inpaint(image, known), sampler="pc",
               generator=torch.Generator().manual_seed(0), **KW).images
    expected = (image + 1) / 2
    torch.testing.assert_close(out[:, :, :, :4], expected[:, :, :, :4].expand(2, 1, 8, 4), atol=1e-6, rtol=0)


def test_cfg_save_and_load(tmp_path):
    pipe = pipe_for(tiny_cfg_unet())
    pipe.save_pretrained(tmp_path)
    loaded = ScoreSDEClassConditionalPipeline.from_pretrained(tmp_path)
    assert loaded.classifier is None and loaded.conditioning == "classifier-free"


def test_wrong_combinations_are_clear_errors():
    unconditional = tiny_cfg_unet(num_class_embeds=None)
    with pytest.raises(ValueError, match="cannot condition on a class"):
        pipe_for(unconditional)(class_labels=[0], **KW)
    pipe = pipe_for(tiny_cfg_unet())
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        pipe(class_labels=[0, K], **KW)  # K is the null label, not a class
    with pytest.raises(ValueError, match="classifier_scale"):
        pipe(class_labels=[0], classifier_scale=1.0, **KW)
    with pytest.raises(ValueError, match="guidance_scale"):
        pipe(class_labels=[0], guidance_scale=float("nan"), **KW)


def test_classifier_term_on_top_of_cfg():
    torch.manual_seed(1)
    clf = TimeClassifierModel(in_channels=1, sample_size=8, num_classes=K, block_out_channels=(8, 16),
                              time_embedding_type="positional", norm_num_groups=4).eval()
    pipe = pipe_for(tiny_cfg_unet(), classifier=clf)
    base = pipe(class_labels=[0, 1], sampler="ddim", generator=torch.Generator().manual_seed(0), **KW).images
    extra = pipe(class_labels=[0, 1], sampler="ddim", classifier_scale=5.0, generator=torch.Generator().manual_seed(0),
                 **KW).images
    assert not torch.allclose(base, extra)


def test_cfg_pipeline_gives_an_image_alone_as_in_a_batch():
    """One image, one seed with classifier-free guidance (the doubled batch of 2 B included). float64: the images of
    two batch compositions differ by rounding only (the bound: test_pipeline_score_sde_conditional.BATCH_TOL)."""
    pipe = pipe_for(tiny_cfg_unet().to(torch.float64))

    def images(labels, seeds):
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        return pipe(class_labels=labels, guidance_scale=1.5, generator=gens, sampler="pc", **KW).images

    torch.testing.assert_close(images([0, 1, 2], [5, 6, 7])[1:2], images([1], [6]), rtol=0, atol=1e-9)
