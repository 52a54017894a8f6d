"""Parity with diffusers on the same tiny random weights and the same noise (UNets built from the Hub configs).

Float tolerance: both sides run float32 with the same draws in the same order; they differ only in rounding of
algebraically equal formulas (e.g. DDPM's posterior coefficients vs the ancestral step), so 1e-4 absolute on [0, 1]
images (and 1e-5 relative on single steps) is far below any sampler difference (a changed step moves pixels by ~0.1).
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, ScoreSdeVeScheduler
from hub_layouts import tiny_ddpm_unet, tiny_ncsnpp_unet

from scorekit import PREDICTORS
from scorekit.pipelines import ScoreSDEPipeline
from scorekit.schedulers import ScoreSDEODEScheduler, ScoreSDEPCScheduler

ATOL = 1e-4


def _ddpm_config(variance_type="fixed_large"):
    # google/ddpm-cifar10-32 (fixed_large) and google/ddpm-ema-celebahq-256 (fixed_small) scheduler configs
    return DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                         variance_type=variance_type, clip_sample=True).config


@pytest.fixture(scope="module")
def ddpm_unet():
    torch.manual_seed(0)
    return tiny_ddpm_unet().eval()


def _ours(unet, scheduler, steps, seed, batch=2):
    pipe = ScoreSDEPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=batch, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                output_type="np")


@pytest.mark.parametrize("variance_type,clip", [("fixed_large", False), ("fixed_small", False),
                                                ("fixed_large", True)])
def test_ancestral_equals_ddpm_pipeline(ddpm_unet, variance_type, clip):
    steps, seed = 25, 3
    config = _ddpm_config(variance_type)
    ref = DDPMPipeline(unet=ddpm_unet, scheduler=DDPMScheduler.from_config(config, clip_sample=clip))
    ref.set_progress_bar_config(disable=True)
    want = ref(batch_size=2, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
               output_type="np").images
    ours = ScoreSDEPCScheduler.from_config(config, predictor="ancestral_sampling", corrector="none",
                                           discretization="discrete", clip_sample=clip)
    assert ours.config.variance_type == variance_type and ours.config.clip_sample is clip
    out = _ours(ddpm_unet, ours, steps, seed)
    assert out.nfe == steps
    assert abs(out.images - want).max() < ATOL


def test_ddpm_config_defaults_to_the_paper_not_diffusers_clipping():
    ours = ScoreSDEPCScheduler.from_config(_ddpm_config())
    assert ours.config.clip_sample is False and ours.config.discretization == "continuous"


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_equals_ddim_pipeline(ddpm_unet, eta):
    steps, seed = 10, 4  # leading spacing: timesteps 900, 800, ..., 0, then clean data
    ref = DDIMPipeline(unet=ddpm_unet, scheduler=DDIMScheduler.from_config(_ddpm_config(), clip_sample=False))
    ref.set_progress_bar_config(disable=True)
    want = ref(batch_size=2, num_inference_steps=steps, eta=eta, generator=torch.Generator().manual_seed(seed),
               output_type="np").images
    ours = ScoreSDEODEScheduler.from_config(_ddpm_config(), solver="ddim", eta=eta, discretization="discrete")
    out = _ours(ddpm_unet, ours, steps, seed)
    assert out.nfe == steps
    assert abs(out.images - want).max() < ATOL


def test_ddim_clip_equals_diffusers_with_clipped_model_output(ddpm_unet):
    steps, seed = 10, 5
    ref = DDIMPipeline(unet=ddpm_unet, scheduler=DDIMScheduler.from_config(_ddpm_config(), clip_sample=True))
    ref.set_progress_bar_config(disable=True)
    want = ref(batch_size=2, num_inference_steps=steps, eta=1.0, use_clipped_model_output=True,
               generator=torch.Generator().manual_seed(seed), output_type="np").images
    ours = ScoreSDEODEScheduler.from_config(_ddpm_config(), solver="ddim", eta=1.0, discretization="discrete",
                                            clip_sample=True)
    assert abs(_ours(ddpm_unet, ours, steps, seed).images - want).max() < ATOL


def test_discrete_timesteps_are_diffusers_integer_timesteps():
    ours = ScoreSDEODEScheduler.from_config(_ddpm_config(), solver="ddim", discretization="discrete")
    ref = DDIMScheduler.from_config(_ddpm_config())
    ours.set_timesteps(20)
    ref.set_timesteps(20)
    assert torch.equal(ours.timesteps.long(), ref.timesteps)


def test_ve_pc_equals_score_sde_ve_pipeline():
    from diffusers import ScoreSdeVePipeline

    torch.manual_seed(1)
    unet = tiny_ncsnpp_unet().eval()
    # google/ncsnpp-celebahq-256's scheduler config
    config = ScoreSdeVeScheduler(num_train_timesteps=2000, snr=0.075, sigma_min=0.01, sigma_max=380.0,
                                 sampling_eps=1e-5, correct_steps=1).config
    steps, seed = 8, 6
    ref = ScoreSdeVePipeline(unet=unet, scheduler=ScoreSdeVeScheduler.from_config(config))
    ref.set_progress_bar_config(disable=True)
    want = ref(batch_size=2, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
               output_type="np").images
    ours = ScoreSDEPCScheduler.from_config(config, discretization="discrete")
    assert (ours.config.predictor, ours.config.corrector, ours.config.snr) == ("reverse_diffusion", "langevin", 0.075)
    out = _ours(unet, ours, steps, seed)
    assert out.nfe == 2 * steps
    assert abs(out.images - want).max() < ATOL


def test_vp_euler_maruyama_step_equals_score_sde_vp_scheduler():
    pytest.importorskip("transformers")  # diffusers exposes the deprecated ScoreSdeVpScheduler only with it
    from diffusers.schedulers import ScoreSdeVpScheduler

    ref = ScoreSdeVpScheduler(num_train_timesteps=1000, beta_min=0.1, beta_max=20.0, sampling_eps=1e-3)
    n = 50
    ref.set_timesteps(n)
    ours = ScoreSDEPCScheduler.from_config({**ref.config, "_class_name": "ScoreSdeVpScheduler"})
    assert (ours.config.sde_type, ours.config.prediction_type) == ("vp", "epsilon")
    g = torch.Generator().manual_seed(0)
    # float64: in float32 diffusers' std = sqrt(1 - exp(2 log_mean)) loses ~1e-3 relative near t = eps (we use expm1)
    x, eps_out = (torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    for t in ref.timesteps[[0, 17, n - 1]].double():
        t_b = t.expand(2)
        want, want_mean = ref.step_pred(eps_out, x, t_b, generator=torch.Generator().manual_seed(7))
        score = ours.convert_model_output(eps_out, t, x)  # -eps / std(t)
        # diffusers and the paper's code step dt = -1/n on a grid spaced (1 - eps)/(n - 1): land on t - 1/n
        got, got_mean = PREDICTORS["euler_maruyama"](x, t_b, t_b - 1.0 / n, lambda *_, s=score: s, ours.sde,
                                                     torch.Generator().manual_seed(7))
        torch.testing.assert_close(got_mean, want_mean, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def _ddim_pipeline(unet, config, steps, seed, **call):
    ref = DDIMPipeline(unet=unet, scheduler=DDIMScheduler.from_config(config))
    ref.set_progress_bar_config(disable=True)
    return ref(batch_size=2, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
               output_type="np", **call).images


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_pipeline_default_clipping_is_reproduced(ddpm_unet, eta):
    """DDIMPipeline on google/ddpm-cifar10-32's config: x0 clipped, the model's own epsilon kept for the direction."""
    steps, seed = 10, 5
    want = _ddim_pipeline(ddpm_unet, _ddpm_config(), steps, seed, eta=eta)  # use_clipped_model_output unset
    ours = ScoreSDEODEScheduler.from_config(_ddpm_config(), solver="ddim", eta=eta, discretization="discrete",
                                            clip_sample=True, use_clipped_model_output=False)
    assert abs(_ours(ddpm_unet, ours, steps, seed).images - want).max() < ATOL
    # the other clipping mode (the score of the clipped x0) is a different sampler, far beyond float error
    other = ScoreSDEODEScheduler.from_config(_ddpm_config(), solver="ddim", eta=eta, discretization="discrete",
                                             clip_sample=True)
    assert abs(_ours(ddpm_unet, other, steps, seed).images - want).max() > 100 * ATOL


def test_clipped_x0_with_own_epsilon_is_a_discrete_ddim_mode():
    with pytest.raises(ValueError, match="use_clipped_model_output=False.*discretization='discrete'"):
        ScoreSDEODEScheduler(solver="ddim", clip_sample=True, use_clipped_model_output=False)


DDPM_FAMILY_CONFIGS = {  # Hub-style DDPM-family schedulers beyond the linear epsilon one
    "cosine-epsilon": dict(beta_schedule="squaredcos_cap_v2"),
    "linear-v": dict(prediction_type="v_prediction"),
    "scaled-linear-sample": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                 prediction_type="sample"),
    "cosine-v-linspace-offset": dict(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                                     timestep_spacing="linspace", set_alpha_to_one=False),
    "zero-snr-v-trailing": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                timestep_spacing="trailing"),
}


# eta = 1 from alpha_bar ~ 0 (the first "linspace" / "trailing" label: 2e-9 on the cosine schedule, 0 at zero SNR)
# makes diffusers' own float32 direction coefficient sqrt(1 - alpha_bar' - sigma^2) cancel (1e-4 off a float64
# reference, NaN at zero SNR; scorekit computes it without cancellation): those run at eta = 0 only
DDIM_CASES = [(name, eta) for name in DDPM_FAMILY_CONFIGS for eta in (0.0, 1.0)
              if eta == 0.0 or DDPM_FAMILY_CONFIGS[name].get("timestep_spacing", "leading") == "leading"]


@pytest.mark.parametrize("name,eta", DDIM_CASES)
def test_ddim_equals_ddim_pipeline_on_ddpm_family_schedules(ddpm_unet, name, eta):
    steps, seed = 7, 8  # 1000 // 7 = 142: "linspace" and "trailing" labels are not multiples of the DDIM stride
    config = DDIMScheduler(clip_sample=False, **DDPM_FAMILY_CONFIGS[name]).config
    want = _ddim_pipeline(ddpm_unet, config, steps, seed, eta=eta)
    ours = ScoreSDEODEScheduler.from_config(config, eta=eta, discretization="discrete")
    assert ours.config.solver == "ddim"
    out = _ours(ddpm_unet, ours, steps, seed)
    assert out.nfe == steps
    assert abs(out.images - want).max() < ATOL


@pytest.mark.parametrize("name", ["cosine-epsilon", "linear-v"])
def test_ancestral_equals_ddpm_pipeline_on_ddpm_family_schedules(ddpm_unet, name):
    steps, seed = 12, 9
    config = DDPMScheduler(clip_sample=False, variance_type="fixed_small", **DDPM_FAMILY_CONFIGS[name]).config
    ref = DDPMPipeline(unet=ddpm_unet, scheduler=DDPMScheduler.from_config(config))
    ref.set_progress_bar_config(disable=True)
    want = ref(batch_size=2, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
               output_type="np").images
    ours = ScoreSDEPCScheduler.from_config(config, predictor="ancestral_sampling", corrector="none",
                                           discretization="discrete")
    assert abs(_ours(ddpm_unet, ours, steps, seed).images - want).max() < ATOL
