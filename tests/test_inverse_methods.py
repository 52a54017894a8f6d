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
  ``benchmarks/conditional.py --sections inverse --quick --n 1000`` (column ``bias2c``: the covariance-corrected
  estimate of :func:`conftest.mean_bias2`, unbiased whatever the method's covariance); the bound
  (:data:`BIAS2_BOUND`) is that value plus 3 of its standard errors, and the test's own estimate must stay below the
  bound plus 4.5 of its standard errors.
- **observation consistency**: noiseless replacement and DDRM keep ``A x = y`` to float error.
- **error falling with steps** for DDRM (its bias shrinks from 20 to 200 steps).
"""


import re

import pytest
import torch
from conftest import (
    INVERSE_TASKS,
    assert_gaussian,
    independent_blocks,
    inverse_problem,
    mean_bias2,
)
from hub_layouts import tiny_ddpm_unet

import scorekit
from scorekit.conditioning import DDRM, DPS, TDS, Downsample, Gray, Mask, Observation, PiGDM, Replacement

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("single_thread")

# method -> (sampler, sampler kwargs): the rows of benchmarks/conditional.py --sections inverse that BIAS2_BOUND bounds
METHODS = {
    "replacement": ("pc", dict(steps=200, snr=0.25)),
    "dps": ("pc", dict(steps=1000, corrector="none")),
    "pigdm": ("pc", dict(steps=200, corrector="none")),
    "ddrm": ("ddrm", dict(steps=20)),
}
# (method, task, sigma_y) -> bound on b: the benchmark's bias2c at n = 1000 + 3 of its standard errors, rounded up
BIAS2_BOUND: dict[tuple[str, str, float], float] = {
    ("replacement", "inpaint", 0.0): 0.36, ("replacement", "inpaint", 0.1): 0.76,
    ("replacement", "colorize", 0.0): 0.11, ("replacement", "colorize", 0.1): 0.18,
    ("replacement", "superres", 0.0): 0.093, ("replacement", "superres", 0.1): 0.17,
    ("replacement", "projection", 0.0): 1.8, ("replacement", "projection", 0.1): 2.0,
    ("dps", "inpaint", 0.0): 3.1, ("dps", "inpaint", 0.1): 5.4, ("dps", "colorize", 0.0): 0.44,
    ("dps", "colorize", 0.1): 4.7, ("dps", "superres", 0.0): 0.46, ("dps", "superres", 0.1): 2.9,
    ("dps", "projection", 0.0): 6.0, ("dps", "projection", 0.1): 7.3,
    ("pigdm", "inpaint", 0.0): 0.8, ("pigdm", "inpaint", 0.1): 2.7, ("pigdm", "colorize", 0.0): 0.11,
    ("pigdm", "colorize", 0.1): 1.4, ("pigdm", "superres", 0.0): 0.16, ("pigdm", "superres", 0.1): 0.92,
    ("pigdm", "projection", 0.0): 1.8, ("pigdm", "projection", 0.1): 2.5,
    ("ddrm", "inpaint", 0.0): 2.1, ("ddrm", "inpaint", 0.1): 7.7, ("ddrm", "colorize", 0.0): 0.55,
    ("ddrm", "colorize", 0.1): 0.38, ("ddrm", "superres", 0.0): 0.87, ("ddrm", "superres", 0.1): 2.8,
    ("ddrm", "projection", 0.0): 6.3, ("ddrm", "projection", 0.1): 13.0,
}


def sample(problem, method: str, n: int, seed: int = 2, **overrides):
    sampler, kwargs = METHODS[method]
    kwargs = {**kwargs, **overrides}
    gauss, obs = problem.gauss, problem.observation
    condition = {"replacement": Replacement, "dps": DPS, "pigdm": PiGDM, "ddrm": DDRM}[method](obs)
    with torch.no_grad():
        x, _ = scorekit.sample(gauss, gauss.sde, (n, 3, 4, 4), sampler, condition=condition, dtype=F64,
                               generator=torch.Generator().manual_seed(seed), **kwargs)
    return x


# --- exactness -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma_y", [0.0, 0.1])
@pytest.mark.parametrize("task", INVERSE_TASKS)
def test_pigdm_is_exact_for_white_gaussian_data(task, sigma_y):
    problem = inverse_problem(task, sigma_y, cov=torch.eye(48, dtype=F64))
    x = sample(problem, "pigdm", 400)  # 200 predictor steps: statistics <= 0.75 of their 1e-3 quantiles, measured
    assert_gaussian(problem.spectral(x), problem.mean, problem.cov, f"pigdm {task} sigma_y={sigma_y}")


@pytest.mark.parametrize("task", ["inpaint", "projection", pytest.param("colorize", marks=pytest.mark.slow),
                                  pytest.param("superres", marks=pytest.mark.slow)])
def test_noisy_replacement_is_exact_for_independent_blocks(task):
    """The noise budget ``sqrt(std^2 - alpha^2 sigma_i^2)`` and the observed coordinates' likelihood score after it is
    spent make replacement exact when the prior does not couple observed and unobserved coordinates (in the
    small-step limit: 500 steps; at 200-300 steps the mean statistic sits at its 1e-3 quantile, measured)."""
    base = inverse_problem(task, 0.3)
    problem = inverse_problem(task, 0.3, cov=independent_blocks(base.gauss.cov, base.observation.operator))
    x = sample(problem, "replacement", 400, steps=500)
    assert_gaussian(problem.spectral(x), problem.mean, problem.cov, f"noisy replacement {task}")


@pytest.mark.parametrize("sampler, kwargs", [("sde-dpmsolver++", {}), ("pc", {}), ("ddim", {"eta": 1.0})])
def test_noisy_replacement_of_a_blur_is_stable_at_every_step_count(sampler, kwargs):
    """A blur has many distinct noise levels ``sigma_y / s_i``: with the bridge term's variance unguarded, the first
    grid point after some coordinate's ``t*`` made its denoised estimate overshoot, and the error to the exact
    posterior mean reached 1e2-1e4 times that of exact draws at 10, 15 or 30 steps (measured; 1 = exact draws). It
    stays within 2x at every step count now."""
    from scorekit.analytic import GaussianScore, gaussian_posterior, image_gaussian
    from scorekit.conditioning import Blur, gaussian_kernel

    mean, cov = image_gaussian(8, 8)
    gauss = GaussianScore(mean, cov, scorekit.VPSDE())
    op = Blur(gaussian_kernel(1.0, 5), (3, 8, 8))
    g = torch.Generator().manual_seed(1)
    x0, _ = gauss.sample(1, g)
    y = op.forward(x0) + 0.02 * torch.randn(1, *op.out_shape, generator=g, dtype=F64)
    m, s = gaussian_posterior(gauss.mean, gauss.cov, op, y, 0.02)
    for steps in (10, 15, 30):
        x, _ = scorekit.sample(gauss, gauss.sde, (64, 3, 8, 8), sampler, steps=steps, dtype=F64,
                               condition=Replacement(Observation(op, y, 0.02)),
                               generator=torch.Generator().manual_seed(0), **kwargs)
        ratio = ((x.reshape(64, -1) - m) ** 2).sum(1).mean() / torch.trace(s)
        assert ratio < 2, f"{sampler} {steps} steps: E|x - m|^2 = {ratio:.3g} x that of exact draws"


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
    bound = BIAS2_BOUND[method, task, sigma_y]
    b, se = mean_bias2(problem.spectral(x), problem.mean, problem.cov)
    assert b <= bound + 4.5 * se, f"{method} {task} sigma_y={sigma_y}: bias2 {b:.3f} +- {se:.3f} above bound {bound}"


@pytest.mark.parametrize("task", ["inpaint", "projection"])
def test_ddrm_bias_falls_with_steps(task):
    """bias2 (the uncorrected column) measured at n = 1000 by benchmarks/conditional.py: inpaint 1.8 (20 steps) ->
    0.30 (200), projection 5.7 -> 1.1; each estimate here has a standard error <= 0.25 (n = 400)."""
    problem, n = inverse_problem(task, 0.0), 400
    bias2 = {steps: mean_bias2(problem.spectral(sample(problem, "ddrm", n, steps=steps)), problem.mean, problem.cov)
             for steps in (20, 200)}
    (b20, se20), (b200, se200) = bias2[20], bias2[200]
    assert b200 + 4 * se200 < 0.5 * (b20 - 4 * se20), bias2


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


@pytest.mark.parametrize("method, sampler", [(DPS, "ddim"), (PiGDM, "pc"), (TDS, "tds")])
def test_gradient_methods_refuse_inference_mode_before_any_score_call(method, sampler):
    """inference_mode cannot be undone by a local enable_grad: a clear error naming the method, not autograd's."""
    calls = []

    def score_fn(x, t):
        calls.append(1)
        return -x

    obs = Observation(Gray((3, 2, 2)), torch.rand(1, 1, 2, 2))
    message = rf"{method.method} takes gradients .*inference_mode\(\) forbids; run it under torch.no_grad\(\)"
    with torch.inference_mode(), pytest.raises(RuntimeError, match=message):
        scorekit.sample(score_fn, scorekit.VPSDE(), (2, 3, 2, 2), sampler, steps=2, condition=method(obs))
    assert calls == []


@pytest.mark.parametrize("method", [DPS, PiGDM, Replacement, DDRM])
def test_methods_run_inside_a_pipeline(method):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(variance_type="fixed_large")
    pipe = scorekit.ScoreSDEPipeline(unet=tiny_ddpm_unet().eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    obs = Observation(Downsample((3, 8, 8), 2), torch.zeros(1, 3, 4, 4), sigma_y=0.1)
    sampler = "ddrm" if method is DDRM else None  # DDRM is a sampler of its own; the others run with the scheduler's
    out = pipe(batch_size=2, num_inference_steps=3, condition=method(obs), output_type="pt", sampler=sampler,
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (2, 3, 8, 8) and torch.isfinite(out.images).all()
    if method is DDRM:
        assert out.nfe == 4  # 3 steps + the final step to sigma = 0


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
    """DDRM is a sampler of its own: the front door refuses a DDRM condition with another sampler before any work,
    naming both (alone or inside a Compose)."""
    for condition in (DDRM(_mask_obs()), scorekit.Compose([DPS(_mask_obs()), DDRM(_mask_obs())])):
        with pytest.raises(ValueError, match=re.escape(f"pass sampler='ddrm', not sampler={sampler!r}")):
            scorekit.sample(_never_called, scorekit.VPSDE(), (2, 3, 4, 4), sampler, steps=2, condition=condition)


def test_dps_needs_no_svd():
    x, _ = scorekit.sample(lambda x, t: -x, scorekit.VPSDE(), (2, 3, 4, 4), "ddim", steps=3,
                           condition=DPS(_composed_obs()), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("condition", [None, "replacement"])
def test_ddrm_sampler_needs_a_ddrm_condition(condition):
    """``sampler="ddrm"`` without a DDRM condition (none, or another method's) is refused before any work."""
    condition = None if condition is None else Replacement(_mask_obs())
    with pytest.raises(ValueError, match="sampler='ddrm' needs condition="):
        scorekit.sample(_never_called, scorekit.VPSDE(), (2, 3, 4, 4), "ddrm", steps=2, condition=condition)


def test_ddrm_through_the_front_door():
    """``scorekit.sample(..., sampler="ddrm")``: NFE, info, callback and progress as every registered sampler, a
    noiseless observation kept exactly, and the same draws alone as in a batch (one generator per sample)."""
    mask = Mask(torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1)) < 0.5)
    obs = Observation(mask, mask.forward(torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(2),
                                                    dtype=F64)))
    seen, ticks = [], []

    def progress(steps):
        for i in steps:
            ticks.append(i)
            yield i

    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    x, info = scorekit.sample(lambda x, t: -x, scorekit.VPSDE(), (2, 3, 4, 4), "ddrm", steps=5, dtype=F64,
                              condition=DDRM(obs, eta=0.85), generator=gens, progress=progress,
                              callback=lambda i, t, x: seen.append(i))
    assert info["nfe"] == 6 and info["sampler"] == "ddrm" and info["steps"] == 5 and info["options"] == {}
    assert seen == ticks == list(range(5)) and info["callback_steps"] == 5
    assert obs.residual(x).abs().max().item() < 1e-12
    alone, _ = scorekit.sample(lambda x, t: -x, scorekit.VPSDE(), (1, 3, 4, 4), "ddrm", steps=5, dtype=F64,
                               condition=DDRM(obs, eta=0.85), generator=[torch.Generator().manual_seed(6)])
    assert torch.equal(x[1:], alone)
