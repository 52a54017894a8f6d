"""Every DDPM-family checkpoint plugs in or is refused with the reason: schedules (any alpha_bar table, zero terminal
SNR), prediction types, the config keys that change the math, round trips, and the scheduler-swap idiom.

Tolerances: the alpha_bar tables are diffusers' float32 tables built by the same operations, so they compare exactly;
the SDE over a table reproduces it at the table's times up to float64 rounding of exp / log (1e-12 relative).
Sampling parity with diffusers' DDIM on these schedules is in tests/test_hub_parity.py.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import assert_mean_cov
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from hub_layouts import tiny_ddpm_unet, tiny_ncsnpp_unet

import scorekit
from scorekit.pipelines import ScoreSDEPipeline
from scorekit.schedulers import ScoreSDEODEScheduler, ScoreSDEPCScheduler, foreign
from scorekit.schedulers.alpha_bars import alpha_bar_table
from scorekit.schedulers.stock import from_stock_config, to_stock_config
from scorekit.score import output_to_denoised, output_to_score
from scorekit.sde import VPSDE, DiscreteVPSDE

SCHEDULES = {  # the DDPM-family schedules on the Hub (diffusers' keys)
    "cosine": dict(beta_schedule="squaredcos_cap_v2"),
    "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    "sigmoid": dict(beta_schedule="sigmoid"),
    "trained_betas": dict(trained_betas=torch.linspace(1e-4, 0.03, 1000).tolist()),
    "zero_snr": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, rescale_betas_zero_snr=True),
}


COSINE_SDE = DiscreteVPSDE(DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod)


@pytest.fixture(autouse=True)
def fresh_warnings():
    foreign._WARNED.clear()  # each conversion warns once per process; every test starts afresh
    yield


def _ks(n=1000):
    return torch.arange(n, dtype=torch.float64) / (n - 1)  # the table's times t_k = k / (N - 1)


@pytest.mark.parametrize("name", [*SCHEDULES, "linear", "laplace"])
def test_alpha_bar_tables_are_diffusers_own(name):
    kwargs = SCHEDULES.get(name, dict(beta_schedule=name))
    ref = DDPMScheduler(**kwargs)
    c = ref.config
    ours = alpha_bar_table(c.num_train_timesteps, c.beta_start, c.beta_end, c.beta_schedule, c.trained_betas,
                           c.rescale_betas_zero_snr)
    assert torch.equal(ours, ref.alphas_cumprod)


@pytest.mark.parametrize("name", [n for n in SCHEDULES if n != "zero_snr"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_ddpm_schedules_convert_to_a_vp_sde_with_their_alpha_bars(name, prediction_type):
    ref = DDPMScheduler(clip_sample=False, prediction_type=prediction_type, **SCHEDULES[name])
    for cls in (ScoreSDEPCScheduler, ScoreSDEODEScheduler):
        s = cls.from_config(ref.config)
        assert isinstance(s.sde, DiscreteVPSDE) and s.config.prediction_type == prediction_type
        alpha, std = s.sde.marginal_coef(_ks())
        torch.testing.assert_close(alpha**2, ref.alphas_cumprod.double(), rtol=1e-12, atol=0)
        torch.testing.assert_close(alpha**2 + std**2, torch.ones(1000, dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["cosine", "scaled_linear", "trained_betas", "linear"])
def test_stock_round_trip_keeps_the_schedule(name):
    ref = DDPMScheduler(clip_sample=False, prediction_type="v_prediction", **SCHEDULES.get(name, {}))
    ours = ScoreSDEPCScheduler.from_config(ref.config)
    stock = to_stock_config(ours)  # scorekit -> the DDPMScheduler config a stock pipeline opens
    back = DDPMScheduler.from_config(stock)
    assert torch.equal(back.alphas_cumprod, ref.alphas_cumprod)
    assert back.config.prediction_type == "v_prediction"
    again = from_stock_config(back.config)  # ... -> scorekit again
    assert repr(again.sde) == repr(ours.sde) and again.config.prediction_type == "v_prediction"
    t = torch.rand(50, dtype=torch.float64)
    torch.testing.assert_close(again.sde.marginal_coef(t), ours.sde.marginal_coef(t), rtol=0, atol=0)


def test_discrete_vp_sde_drift_is_the_derivative_of_its_marginals():
    # beta(t) = -d log alpha(t)^2 / dt (VP, eq. 11); central differences inside the table's intervals, float64
    for sde in (COSINE_SDE, DiscreteVPSDE(DDPMScheduler(rescale_betas_zero_snr=True).alphas_cumprod)):
        t = (torch.arange(0, 999, 37, dtype=torch.float64) + 0.5) / 999
        h = 1e-7
        log_a2 = [2 * sde.marginal_coef(t + d)[0].log() for d in (h, -h)]
        g = sde.sde(torch.zeros(len(t), 1, dtype=torch.float64), t)[1]
        torch.testing.assert_close(g**2, -(log_a2[0] - log_a2[1]) / (2 * h), rtol=1e-6, atol=0)


# n = 4000 float64 draws with the exact score of the 16-D Gaussian (tests/test_samplers.py's target and tolerance:
# k / sqrt(n) = 0.079 per entry). Steps measured on n = 20000 with this cosine table, worst entry (noise ~0.02):
# dpmsolver++ 20 steps 0.047, 40 steps 0.020; ddim 100 steps 0.033, 300 steps 0.022; pc 400 steps 0.016; adaptive
# ode 0.019 -- the step counts below keep the bias under a third of the tolerance.
@pytest.mark.parametrize("sampler,kwargs", [("dpmsolver++", dict(steps=40)), ("ddim", dict(steps=300)),
                                            ("pc", dict(steps=400)), ("ode", dict())])
def test_samplers_reproduce_a_gaussian_on_the_cosine_schedule(gaussian16, sampler, kwargs):
    x, _ = scorekit.sample(gaussian16.score(COSINE_SDE), COSINE_SDE, (4000, 16), sampler=sampler,
                           generator=torch.Generator().manual_seed(1), dtype=torch.float64, **kwargs)
    assert_mean_cov(x, gaussian16.mean, gaussian16.cov, what=f"{sampler} on the cosine VP table")


def test_linear_ddpm_config_stays_the_continuous_vp_sde():
    s = ScoreSDEPCScheduler.from_config(DDPMScheduler(clip_sample=False).config)
    assert type(s.sde) is VPSDE and (s.sde.beta_min, s.sde.beta_max) == (0.1, 20.0)


# --- zero terminal SNR -----------------------------------------------------------------------------------------------
def test_zero_terminal_snr_is_refused_by_name_where_it_cannot_work():
    config = DDPMScheduler(rescale_betas_zero_snr=True).config
    with pytest.raises(ValueError, match="rescale_betas_zero_snr=True.*discretization='discrete'"):
        ScoreSDEPCScheduler.from_config(config)  # continuous samplers start at t = 1, where alpha = 0
    with pytest.raises(ValueError, match="rescale_betas_zero_snr=True.*discretization='discrete'"):
        ScoreSDEODEScheduler.from_config(config, prediction_type="v_prediction")
    trailing = DDIMScheduler(rescale_betas_zero_snr=True, timestep_spacing="trailing").config
    eps_model = ScoreSDEODEScheduler.from_config(trailing, discretization="discrete")
    with pytest.raises(ValueError, match="alpha_bar = 0.*prediction_type in \\['sample', 'v_prediction'\\]"):
        eps_model.set_timesteps(10)  # an epsilon model cannot give x0 at alpha_bar = 0
    ddpm = ScoreSDEPCScheduler.from_config(trailing, prediction_type="v_prediction", discretization="discrete",
                                           predictor="ancestral_sampling", corrector="none")
    with pytest.raises(ValueError, match="alpha_bar = 0.*solver='ddim'"):
        ddpm.set_timesteps(10)  # the predictors step through the score, which has no x0 there


def test_zero_terminal_snr_schedule_reaches_alpha_bar_zero():
    ref = DDIMScheduler(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction")
    s = ScoreSDEODEScheduler.from_config(ref.config, discretization="discrete")
    assert s.sde.zero_terminal_snr
    alpha, std = s.sde.marginal_coef(torch.tensor([1.0], dtype=torch.float64))
    assert (float(alpha), float(std)) == (0.0, 1.0)  # the prior N(0, I) is the exact marginal at t = 1
    torch.testing.assert_close(s.sde.marginal_coef(_ks())[0] ** 2, ref.alphas_cumprod.double(), rtol=1e-12, atol=0)
    s.set_timesteps(10)
    assert int(s.timesteps[0]) == 999


# --- prediction types through the score adapters ---------------------------------------------------------------------
@pytest.mark.parametrize("sde", [VPSDE(), COSINE_SDE], ids=["vp", "cosine-table"])
def test_every_prediction_type_gives_the_same_score_and_x0(sde):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, 5, generator=g, dtype=torch.float64), torch.randn(4, 3, 5, generator=g,
                                                                                   dtype=torch.float64)
    t = torch.tensor([0.02, 0.3, 0.7, 0.999], dtype=torch.float64)
    alpha, std = (c[:, None, None] for c in sde.marginal_coef(t))
    x = alpha * x0 + std * eps
    outputs = {"epsilon": eps, "sample": x0, "v_prediction": alpha * eps - std * x0}
    want = -eps / std  # the score of N(alpha x0, std^2 I) at x
    for prediction, out in outputs.items():
        torch.testing.assert_close(output_to_score(out, t, sde, prediction, x), want, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(output_to_denoised(out, x, t, sde, prediction), x0, rtol=1e-9, atol=1e-9)


def test_sample_and_v_models_give_x0_at_zero_snr():
    sde = DiscreteVPSDE(DDPMScheduler(rescale_betas_zero_snr=True).alphas_cumprod)
    x0, x = torch.randn(2, 3), torch.randn(2, 3)
    t = torch.ones(2)  # alpha = 0, std = 1: x is pure noise
    assert torch.equal(output_to_denoised(-x0, x, t, sde, "v_prediction"), x0)  # v = alpha eps - std x0 = -x0
    assert torch.equal(output_to_denoised(x0, x, t, sde, "sample"), x0)
    torch.testing.assert_close(output_to_score(-x0, t, sde, "v_prediction", x), -x)  # score of N(0, I)


# --- every config key: honoured, refused by name, or warned ----------------------------------------------------------
REFUSED = [
    (DDPMScheduler, dict(thresholding=True), "thresholding=True"),
    (DDPMScheduler, dict(variance_type="learned_range"), "variance_type='learned_range'"),
    (DDPMScheduler, dict(variance_type="fixed_large_log"), "variance_type='fixed_large_log'"),
    (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
     "algorithm_type='dpmsolver'"),
    (DPMSolverMultistepScheduler, dict(solver_type="heun"), "solver_type='heun'"),
    (DPMSolverMultistepScheduler, dict(lower_order_final=False), "lower_order_final=False"),
    (DPMSolverMultistepScheduler, dict(euler_at_final=True), "euler_at_final=True"),
    (DPMSolverMultistepScheduler, dict(use_exponential_sigmas=True), "use_exponential_sigmas=True"),
    (DPMSolverMultistepScheduler, dict(lambda_min_clipped=-5.1), "lambda_min_clipped=-5.1"),
    (DPMSolverMultistepScheduler, dict(variance_type="learned_range"), "variance_type='learned_range'"),
    (DPMSolverMultistepScheduler, dict(prediction_type="flow_prediction"), "prediction_type='flow_prediction'"),
    (DPMSolverMultistepScheduler, dict(thresholding=True), "thresholding=True"),
]


@pytest.mark.parametrize("cls,kwargs,match", REFUSED, ids=[f"{c.__name__[:4]}-{next(iter(k))}" for c, k, _ in REFUSED])
def test_keys_scorekit_cannot_honour_are_refused_by_name(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScoreSDEODEScheduler.from_config({**cls(**kwargs).config, "_class_name": cls.__name__})


def test_clip_sample_range_is_refused_when_clipping():
    config = DDIMScheduler(clip_sample_range=2.0).config
    with pytest.raises(ValueError, match="clip_sample_range=2.0"):
        ScoreSDEODEScheduler.from_config(config, clip_sample=True)


@pytest.mark.parametrize("key,value", [("timestep_spacing", "trailing"), ("steps_offset", 1),
                                       ("set_alpha_to_one", False)])
def test_discrete_timestep_keys_warn_when_dropped_and_are_honoured_when_discrete(key, value):
    config = DDIMScheduler(clip_sample=False, **{key: value}).config
    with pytest.warns(UserWarning, match=f"drops {key}={value!r}.*discretization='discrete'"):
        ScoreSDEODEScheduler.from_config(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = ScoreSDEODEScheduler.from_config(config, discretization="discrete")
    ref = DDIMScheduler.from_config(config)
    ours.set_timesteps(7)
    ref.set_timesteps(7)
    assert torch.equal(ours.timesteps.long(), ref.timesteps)
    for k in ref.timesteps:  # DDIM lands on k - N // S, or on the final alpha_bar (set_alpha_to_one)
        prev = int(k) - 1000 // 7
        want = ref.alphas_cumprod[prev] if prev >= 0 else ref.final_alpha_cumprod
        got = ours.step_sde.marginal_coef(ours.next_timestep(k).reshape(1))[0] ** 2
        torch.testing.assert_close(got, want.reshape(1), rtol=1e-6, atol=0)


def test_clip_sample_is_reported_once_when_dropped():
    config = DDPMScheduler().config  # clip_sample=True: diffusers' default
    with pytest.warns(UserWarning, match="drops clip_sample=True"):
        ScoreSDEPCScheduler.from_config(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ScoreSDEPCScheduler.from_config(config)  # once
        assert ScoreSDEPCScheduler.from_config(DDPMScheduler().config, clip_sample=True).config.clip_sample


def test_variance_types_map_to_the_ancestral_noise():
    assert ScoreSDEPCScheduler.from_config(DDPMScheduler(variance_type="fixed_small_log").config,
                                           clip_sample=False).config.variance_type == "fixed_small"
    assert ScoreSDEPCScheduler.from_config(DDPMScheduler(variance_type="fixed_large").config,
                                           clip_sample=False).config.variance_type == "fixed_large"


@pytest.mark.parametrize("kwargs,want", [
    (dict(), dict(sampler="dpmsolver++", order=2, time_grid="uniform", denoise=True)),
    (dict(solver_order=3, use_karras_sigmas=True), dict(order=3, time_grid="karras")),
    (dict(use_lu_lambdas=True, final_sigmas_type="sigma_min"), dict(time_grid="logsnr", denoise=False)),
    (dict(algorithm_type="sde-dpmsolver++", solver_order=1), dict(sampler="sde-dpmsolver++", order=1)),
])
def test_dpm_solver_keys_are_honoured(kwargs, want):
    s = ScoreSDEODEScheduler.from_config(DPMSolverMultistepScheduler(**kwargs).config)
    got = s.sample_kwargs()
    assert {k: got[k] for k in want} == want


# --- the scheduler-swap idiom ----------------------------------------------------------------------------------------
def _pipe(scheduler, unet=None):
    pipe = ScoreSDEPipeline(unet=unet or tiny_ddpm_unet().eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_swapping_in_dpm_solver_runs_scorekit_dpm_solver_on_the_same_model():
    torch.manual_seed(0)
    pipe = _pipe(DDPMScheduler(clip_sample=False, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"))
    sde = pipe.scheduler.sde
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    assert isinstance(pipe.scheduler, ScoreSDEODEScheduler) and pipe.scheduler.config.solver == "dpmsolver++"
    assert repr(pipe.scheduler.sde) == repr(sde) and pipe.scheduler.config.prediction_type == "v_prediction"
    out = pipe(batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(1), output_type="np")
    assert out.nfe == 5  # 4 steps and the final denoising (diffusers' final_sigmas_type="zero")
    want = pipe(batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(1), output_type="np",
                sampler="dpmsolver++", time_grid="uniform", order=2)
    assert (out.images == want.images).all()
    # the diffusers scheduler itself kept the model's schedule, as it would have from a DDPMScheduler
    dpm = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    assert torch.equal(dpm.alphas_cumprod, DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    assert pipe.scheduler.sample_kwargs()["sampler"] == "ddim" and repr(pipe.scheduler.sde) == repr(sde)


def test_swapping_dpm_solver_into_a_ve_pipeline_keeps_the_ve_sde():
    torch.manual_seed(0)
    pipe = _pipe(ScoreSDEPCScheduler(sde_type="ve", prediction_type="sigma", sigma_max=380.0), tiny_ncsnpp_unet())
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    assert pipe.scheduler.config.solver == "dpmsolver++" and pipe.scheduler.sde.sigma_max == 380.0
    assert pipe(batch_size=1, num_inference_steps=3, output_type="np").nfe == 4


def test_swapping_in_a_scheduler_without_equivalent_names_what_works():
    pipe = _pipe(DDPMScheduler(clip_sample=False))
    with pytest.raises(TypeError, match="EulerDiscreteScheduler has no scorekit equivalent.*DPMSolverMultistep"):
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    assert isinstance(pipe.scheduler, ScoreSDEPCScheduler)  # unchanged
