"""Bad input to the public entry points raises ValueError / TypeError whose message names the argument."""

from __future__ import annotations

import pytest
import torch

import scorekit
from scorekit.analytic import GaussianScore
from scorekit.score import model_score_fn
from scorekit.sde import VESDE, VPSDE, SubVPSDE, get_sde

SDE = VPSDE()
SCORE = GaussianScore(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64), SDE)


def call(**overrides):
    """``scorekit.sample`` on a 2-D standard Gaussian, 3 steps, with some arguments replaced."""
    kwargs = dict(score_fn=SCORE, sde=SDE, shape=(4, 2), steps=3, dtype=torch.float64,
                  generator=torch.Generator().manual_seed(0))
    kwargs.update(overrides)
    return scorekit.sample(kwargs.pop("score_fn"), kwargs.pop("sde"), kwargs.pop("shape"), **kwargs)


# (overrides, exception, regex the message must match: the argument's name and, where printable, the value)
BAD_SAMPLE_ARGS = {
    "sampler_unknown": (dict(sampler="heun"), ValueError, r"sampler='heun'.*expected one of"),
    "predictor_unknown": (dict(predictor="leapfrog"), ValueError, r"predictor='leapfrog'.*expected one of"),
    "corrector_unknown": (dict(corrector="mala"), ValueError, r"corrector='mala'.*expected one of"),
    "method_unknown": (dict(sampler="ode", method="rk4"), ValueError, r"method='rk4'.*expected one of"),
    "steps_zero": (dict(steps=0), ValueError, r"steps .*got 0"),
    "steps_negative": (dict(sampler="ode", method="euler", steps=-2), ValueError, r"steps .*got -2"),
    "steps_float": (dict(sampler="ddim", steps=2.5), ValueError, r"steps must be an integer.*2\.5"),
    "steps_str": (dict(steps="10"), ValueError, r"steps must be an integer.*'10'"),
    "steps_bool": (dict(steps=True), ValueError, r"steps must be an integer.*True"),
    "snr_zero": (dict(snr=0.0), ValueError, r"snr must be > 0, got 0"),
    "snr_negative": (dict(snr=-0.1), ValueError, r"snr must be > 0, got -0\.1"),
    "snr_nan": (dict(snr=float("nan")), ValueError, r"snr must be a finite number, got nan"),
    "eta_negative": (dict(sampler="ddim", eta=-0.5), ValueError, r"eta must be >= 0, got -0\.5"),
    "n_corrector_steps_zero": (dict(n_corrector_steps=0), ValueError, r"n_corrector_steps .*got 0"),
    "n_corrector_steps_float": (dict(n_corrector_steps=1.5), ValueError, r"n_corrector_steps .*1\.5"),
    "n_corrector_steps_zero_ald": (dict(sampler="ald", n_corrector_steps=0), ValueError, r"n_corrector_steps"),
    "step_size_zero_ald": (dict(sampler="ald", step_size=0.0), ValueError, r"step_size must be > 0"),
    "rtol_zero": (dict(sampler="ode", method="dopri5", rtol=0.0), ValueError, r"rtol must be > 0"),
    "atol_negative": (dict(sampler="ode", method="scipy_RK45", atol=-1e-5), ValueError, r"atol must be > 0"),
    "eps_zero": (dict(eps=0.0), ValueError, r"eps must be > 0"),
    "eps_at_T": (dict(eps=1.0), ValueError, r"eps must be smaller than sde\.T"),
    "shape_int": (dict(shape=4), ValueError, r"shape must be a tuple of ints"),
    "shape_none": (dict(shape=None), ValueError, r"shape must be a tuple of ints"),
    "shape_one_dim": (dict(shape=(4,)), ValueError, r"shape must be \(batch, \.\.\.\)"),
    "shape_zero": (dict(shape=(0, 2)), ValueError, r"shape must be .*positive"),
    "shape_negative": (dict(shape=(4, -2)), ValueError, r"shape must be .*positive"),
    "x_T_mismatch": (dict(x_T=torch.zeros(4, 3, dtype=torch.float64)), ValueError, r"x_T has shape \(4, 3\)"),
    "probability_flow_ancestral": (dict(predictor="ancestral_sampling", probability_flow=True), ValueError,
                                   r"probability_flow=True needs predictor"),
    "sde_class_not_instance": (dict(sde=VPSDE), TypeError, r"sde must be a scorekit SDE"),
    "sde_name": (dict(sde="vp"), TypeError, r"sde must be a scorekit SDE.*str"),
    "condition_wrong_type": (dict(condition=lambda x: x), TypeError, r"condition must be a scorekit Condition"),
    "score_fn_not_callable": (dict(score_fn=3.0), TypeError, r"score_fn must be callable.*float"),
    "score_fn_wrong_shape": (dict(score_fn=lambda x, t: x.sum(0)), ValueError,
                             r"score_fn must return a tensor shaped like x \(4, 2\), got \(2,\)"),
    "score_fn_not_tensor": (dict(score_fn=lambda x, t: x.tolist()), ValueError,
                            r"score_fn must return a tensor.*list"),
}


@pytest.mark.parametrize("case", list(BAD_SAMPLE_ARGS))
def test_bad_sample_argument(case):
    overrides, error, message = BAD_SAMPLE_ARGS[case]
    with pytest.raises(error, match=message):
        call(**overrides)


# Shapes that are not tuples of ints, and an x_T that is not a tensor. Before the fix they gave int("a")'s message
# without the argument's name, a silent truncation of 2.5 to 2, and an AttributeError.
MALFORMED = {
    "shape_str": (dict(shape="ab"), ValueError, r"shape must be a tuple of ints"),
    "shape_float": (dict(shape=(2.5, 2)), ValueError, r"shape must be a tuple of ints"),
    "x_T_not_tensor": (dict(x_T=[[0.0, 0.0]] * 4), TypeError, r"x_T must be a torch\.Tensor"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_shape_and_x_T(case):
    overrides, error, message = MALFORMED[case]
    with pytest.raises(error, match=message):
        call(**overrides)


def nan_score(x, t):
    return torch.full_like(x, float("nan"))


@pytest.mark.parametrize(
    "kwargs",
    [dict(sampler="pc"), dict(sampler="pc", predictor="none"), dict(sampler="ode", method="euler"),
     dict(sampler="ode", method="dopri5"), dict(sampler="ode", method="scipy_RK45"), dict(sampler="ddim"),
     dict(sampler="ald")],
    ids=["pc", "pc_corrector_only", "ode_euler", "ode_dopri5", "ode_scipy", "ddim", "ald"],
)
def test_nan_score_is_reported(kwargs):
    with pytest.raises(ValueError, match=r"score_fn returned non-finite values"):
        call(score_fn=nan_score, **kwargs)


def test_score_turning_nan_midway_is_reported():
    # A model that diverges only near the data (t < 0.5) must still be caught, with the time it happened.
    def score(x, t):
        return SCORE(x, t) / (t[:, None] > 0.5)

    with pytest.raises(ValueError, match=r"score_fn returned non-finite values .*at t=0\.[0-4]"):
        call(score_fn=score, steps=10)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: VPSDE(N=0), r"N must be > 0"),
        (lambda: VPSDE(N=2.5), r"N must be an integer"),
        (lambda: VPSDE(beta_min=-0.1), r"beta_min must be > 0"),
        (lambda: SubVPSDE(beta_min=5.0, beta_max=1.0), r"beta_max must be >= beta_min"),
        (lambda: VESDE(sigma_min=1.0, sigma_max=0.5), r"sigma_max must be > sigma_min"),
        (lambda: VESDE(T=0.0), r"T must be > 0"),
        (lambda: VPSDE(T=1.0, sampling_eps=1.0), r"sampling_eps must be smaller than T"),
        (lambda: get_sde("edm"), r"sde='edm' is not supported"),
        (lambda: model_score_fn(lambda x, t: x, SDE, parameterization="v"), r"parameterization='v'"),
    ],
    ids=["N_zero", "N_float", "beta_min", "beta_order", "sigma_order", "T_zero", "sampling_eps", "get_sde",
         "parameterization"],
)
def test_bad_constructor_argument(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_callback_and_dtype_are_checked_before_sampling():
    with pytest.raises(TypeError, match="callback must be callable"):
        call(callback=3)
    with pytest.raises(TypeError, match="dtype must be a torch.dtype"):
        call(dtype="float64")


def test_numpy_integer_steps_are_accepted():
    import numpy as np

    x, info = call(steps=np.int64(3), corrector="none")
    assert info["nfe"] == 3 and x.shape == (4, 2)


def test_corrector_only_denoise_returns_the_langevin_mean():
    # With predictor "none" the denoised output is the last corrector step's noise-free mean, not its noisy sample.
    kwargs = dict(predictor="none", corrector="langevin", n_corrector_steps=1)
    noisy, _ = call(denoise=False, **kwargs)
    mean, _ = call(denoise=True, **kwargs)
    assert not torch.equal(noisy, mean)
