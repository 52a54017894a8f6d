"""diffusers schedulers: config conversion, save/load, and manual step loops equal to scorekit.sample."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, ScoreSdeVeScheduler

import scorekit
from scorekit.analytic import GaussianScore
from scorekit.schedulers import ScoreSDEODEScheduler, ScoreSDEPCScheduler


def public(config):
    return {k: v for k, v in config.items() if not k.startswith("_")}


@pytest.mark.parametrize("source", [DDPMScheduler, DDIMScheduler])
def test_ddpm_config_maps_exactly_to_vp(source):
    ddpm = source(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    for cls in (ScoreSDEPCScheduler, ScoreSDEODEScheduler):
        s = cls.from_config(ddpm.config)
        assert s.config.sde_type == "vp" and s.config.prediction_type == "epsilon"
        assert s.config.beta_min == 1000 * 1e-4 and s.config.beta_max == 1000 * 0.02  # exact, not approximate
        assert isinstance(s.sde, scorekit.VPSDE) and s.sde.N == 1000
        assert s.data_range == (-1.0, 1.0)


def test_ddpm_betas_equal_vp_discretization():
    # DDPM's beta_i = beta_start + i (beta_end - beta_start) / (N - 1) equals beta(t_i) / N at t_i = i / (N - 1).
    ddpm = DDPMScheduler()
    sde = ScoreSDEPCScheduler.from_config(ddpm.config).sde
    t = torch.arange(1000, dtype=torch.float64) / 999
    torch.testing.assert_close(sde.beta(t) / sde.N, ddpm.betas.double(), rtol=1e-6, atol=1e-9)


def test_ncsnpp_config_maps_to_ve():
    ve = ScoreSdeVeScheduler(num_train_timesteps=2000, snr=0.075, sigma_min=0.01, sigma_max=380.0)
    s = ScoreSDEPCScheduler.from_config(ve.config)
    assert isinstance(s.sde, scorekit.VESDE)
    assert (s.sde.sigma_min, s.sde.sigma_max, s.sde.N) == (0.01, 380.0, 2000)
    assert s.config.snr == 0.075 and s.config.prediction_type == "sigma" and s.data_range == (0.0, 1.0)


def test_unknown_ddpm_schedule_is_refused_by_name():
    config = {**DDPMScheduler().config, "beta_schedule": "exp", "_class_name": "DDPMScheduler"}
    with pytest.raises(ValueError, match="beta_schedule='exp'.*squaredcos_cap_v2"):
        ScoreSDEPCScheduler.from_config(config)


@pytest.mark.parametrize("cls", [ScoreSDEPCScheduler, ScoreSDEODEScheduler])
def test_save_load_round_trip(cls, tmp_path):
    s = cls.from_config(DDPMScheduler().config)
    s.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path)
    assert public(loaded.config) == public(s.config)
    assert repr(loaded.sde) == repr(s.sde)


@pytest.mark.parametrize(
    "scheduler",
    [
        ScoreSDEPCScheduler(prediction_type="score", predictor="reverse_diffusion", corrector="langevin"),
        ScoreSDEPCScheduler(sde_type="ve", prediction_type="score", predictor="ancestral_sampling", corrector="ald"),
        ScoreSDEODEScheduler(sde_type="subvp", prediction_type="score", solver="euler"),
        ScoreSDEODEScheduler(prediction_type="score", solver="heun"),
        ScoreSDEODEScheduler(sde_type="ve", prediction_type="score", solver="ddim", eta=0.7),
    ],
    ids=["pc-vp", "pc-ve-ancestral-ald", "euler-subvp", "heun-vp", "ddim-ve"],
)
def test_manual_step_loop_equals_functional_sampler(scheduler):
    """A diffusers-style loop over timesteps gives the same bytes as scorekit.sample with the same seed."""
    sde = scheduler.sde
    gauss = GaussianScore(torch.zeros(3), torch.diag(torch.tensor([0.5, 1.0, 2.0])), sde)
    kwargs = scheduler.sample_kwargs()
    expected, info = scorekit.sample(gauss, sde, (6, 3), steps=7, generator=torch.Generator().manual_seed(3),
                                     dtype=torch.float64, **kwargs)
    g = torch.Generator().manual_seed(3)
    scheduler.set_timesteps(7)
    x = sde.prior_sampling((6, 3), generator=g, dtype=torch.float64)
    calls = 0
    for t in scheduler.timesteps:
        t = t.double()
        if isinstance(scheduler, ScoreSDEPCScheduler):
            x = scheduler.step_correct(gauss(x, t.expand(6)), t, x, generator=g).prev_sample
            calls += 1
        out = scheduler.step(gauss(x, t.expand(6)), t, x, generator=g)
        x, calls = out.prev_sample, calls + 1
    if isinstance(scheduler, ScoreSDEPCScheduler):
        x = out.prev_sample_mean
    else:
        t_end = torch.full((6,), sde.sampling_eps, dtype=x.dtype)
        x, calls = scorekit.tweedie_denoise(x, t_end, gauss, sde), calls + 1
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-6)
    assert calls == info["nfe"]


def test_epsilon_prediction_converts_to_score():
    s = ScoreSDEPCScheduler(prediction_type="epsilon")
    x, eps = torch.randn(4, 2), torch.randn(4, 2)
    t = torch.tensor(0.3)
    std = s.sde.marginal_coef(t.expand(4))[1]
    torch.testing.assert_close(s.convert_model_output(eps, t, x), -eps / std[:, None])  # score = -eps / std
    torch.testing.assert_close(s.model_timestep(t, x), torch.full((4,), 0.3 * 999))


def test_bad_scheduler_arguments():
    with pytest.raises(ValueError, match="sde_type"):
        ScoreSDEPCScheduler(sde_type="vpp")
    with pytest.raises(ValueError, match="predictor"):
        ScoreSDEPCScheduler(predictor="heun")
    with pytest.raises(ValueError, match="snr"):
        ScoreSDEPCScheduler(snr=0)
    with pytest.raises(ValueError, match="solver"):
        ScoreSDEODEScheduler(solver="rk4")
    with pytest.raises(ValueError, match="num_inference_steps"):
        ScoreSDEPCScheduler().set_timesteps(0)
    with pytest.raises(ValueError, match="adaptive"):
        ScoreSDEODEScheduler(solver="dopri5").set_timesteps(10)
