"""The numeric policy (scorekit.numerics): every sampler x SDE x dtype runs finite and agrees with float32; no solver
evaluates the score outside [eps, T]; callbacks on every step; degenerate steps and non-finite values handled."""

from __future__ import annotations

import pytest
import torch

import scorekit
from scorekit.analytic import GaussianScore
from scorekit.sde import VESDE, VPSDE, SubVPSDE

MEAN = torch.tensor([0.5, -0.3], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
# 7 x 2 = 14 noise entries: below 16, torch draws the same normals in float32 and float64 from one seed, so the
# float64 run sees the float32 run's noise and the two differ by rounding only.
SHAPE = (7, 2)
SDES = {"vp": lambda: VPSDE(), "subvp": lambda: SubVPSDE(), "ve1348": lambda: VESDE(sigma_max=1348.0)}
SAMPLERS = {
    "pc_rd_langevin": dict(sampler="pc", steps=10),
    "pc_em_none": dict(sampler="pc", predictor="euler_maruyama", corrector="none", steps=10),
    "pc_ancestral_ald": dict(sampler="pc", predictor="ancestral_sampling", corrector="ald", steps=10),
    "pc_pflow": dict(sampler="pc", probability_flow=True, corrector="none", steps=10),
    "ald": dict(sampler="ald", steps=10),  # step_size set per SDE by sampler_kwargs
    "ode_euler": dict(sampler="ode", method="euler", steps=10),
    "ode_heun": dict(sampler="ode", method="heun", steps=5),
    "ode_dopri5": dict(sampler="ode", method="dopri5", rtol=1e-3, atol=1e-3),
    "ddim": dict(sampler="ddim", steps=10),
    "ddim_eta1": dict(sampler="ddim", eta=1.0, steps=10),
}
UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float64: 2.0**-24}  # vs float32's 2^-24


def sampler_kwargs(label: str, sde) -> dict:
    """The settings of ``label``; ALD gets NCSN's relative step ``step_size / std(eps)^2 = 0.2`` on every SDE (2e-5
    for VE's sigma_min = 0.01; the same absolute 2e-5 diverges on sub-VP, whose std(eps) is ~1e-4)."""
    kwargs = dict(SAMPLERS[label])
    if label == "ald":
        kwargs["step_size"] = 0.2 * sde.marginal_coef(torch.tensor([sde.sampling_eps]))[1].item() ** 2
    return kwargs


def model_in(dtype: torch.dtype, score):
    """The exact score run as a ``dtype`` model: asserts it is called in its dtype, rounds its output to it."""

    def fn(x, t):
        assert x.dtype == dtype, f"the model was called with {x.dtype}, not its own {dtype}"
        assert t.dtype in (torch.float32, torch.float64), f"time in {t.dtype}: coefficients must not be low-precision"
        return score(x, t)  # GaussianScore computes in float64 and returns x.dtype

    return fn


@pytest.fixture(scope="module")
def float32_runs():
    """Reference runs in float32 for each (sde, sampler); x_T is drawn once in float32 and shared by all dtypes."""
    runs = {}
    for sde_name, make in SDES.items():
        sde = make()
        x_T = sde.prior_sampling(SHAPE, generator=torch.Generator().manual_seed(1))
        for label in SAMPLERS:
            kwargs = sampler_kwargs(label, sde)
            x, _ = scorekit.sample(model_in(torch.float32, GaussianScore(MEAN, COV, sde)), sde, SHAPE, x_T=x_T,
                                   generator=torch.Generator().manual_seed(0), **kwargs)
            runs[sde_name, label] = (x_T, x)
    return runs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=["fp16", "bf16", "fp64"])
@pytest.mark.parametrize("sde_name", list(SDES))
def test_every_sampler_in_every_dtype_is_finite_and_agrees_with_float32(dtype, sde_name, float32_runs):
    sde = SDES[sde_name]()
    for label in SAMPLERS:
        kwargs = sampler_kwargs(label, sde)
        x_T, ref = float32_runs[sde_name, label]
        x, _ = scorekit.sample(model_in(dtype, GaussianScore(MEAN, COV, sde)), sde, SHAPE, x_T=x_T, dtype=dtype,
                               generator=torch.Generator().manual_seed(0), **kwargs)
        assert x.dtype == dtype and torch.isfinite(x).all(), label
        # Rounding: the model's input and output are rounded to `dtype` at every call (relative error u), the samples
        # to `dtype` at the end. Errors of a few u per call, over <= 20 calls of a contracting reverse process, stay
        # below 200 u relative to the data's scale (|x| <= ~4 here); an adaptive solve may also take other steps,
        # which its tolerance (1e-3) bounds.
        tol = 200 * UNIT_ROUNDOFF[dtype] * (1 + ref.abs().max().item())
        tol += 1e-2 if kwargs.get("method") == "dopri5" else 0.0
        err = (x.double() - ref.double()).abs().max().item()
        assert err <= tol, f"{label}: max |x_{dtype} - x_float32| = {err:.3g} > {tol:.3g}"


# --- every evaluation inside [eps, T] ------------------------------------------------------------------------------
class TimeRecorder:
    """Wrap a score and record the smallest and largest time it was evaluated at, in the time's own dtype."""

    def __init__(self, score, dtype):
        self.score, self.dtype, self.lo, self.hi, self.calls = score, dtype, float("inf"), -float("inf"), 0

    def __call__(self, x, t):
        self.calls += 1
        self.lo, self.hi = min(self.lo, t.min().item()), max(self.hi, t.max().item())
        self.time_dtype = t.dtype
        return self.score(x.to(torch.float64), t).to(x.dtype) if x.requires_grad else self.score(x, t)

    def assert_inside(self, sde, eps):
        assert self.calls > 0
        eps_t = torch.tensor(eps, dtype=self.time_dtype).item()  # eps as the time's dtype holds it
        assert eps_t <= self.lo and self.hi <= sde.T, f"score evaluated at t in [{self.lo}, {self.hi}]"


ADAPTIVE = ["dopri5", "bosh3", "scipy_RK45"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("sde_name", list(SDES))
def test_sampling_stays_inside_eps_T(sde_name, dtype):
    sde = SDES[sde_name]()
    configs = [sampler_kwargs(label, sde) for label in SAMPLERS] + [dict(sampler="ode", method=m) for m in ADAPTIVE]
    for kwargs in configs:
        rec = TimeRecorder(GaussianScore(MEAN, COV, sde), dtype)
        scorekit.sample(rec, sde, SHAPE, dtype=dtype, generator=torch.Generator().manual_seed(0), **kwargs)
        rec.assert_inside(sde, sde.sampling_eps)


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("sde_name", list(SDES))
def test_encode_decode_likelihood_stay_inside_eps_T(sde_name, method):
    # N(0, 1) data: VE encode from it crashed with "underflow in dt" when the first-step probe reached t ~ 6
    sde = SDES[sde_name]()
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float32, torch.float16):
        rec = TimeRecorder(GaussianScore(MEAN, COV, sde), dtype)
        z, _ = scorekit.encode(rec, sde, x.to(dtype), method=method, rtol=1e-4, atol=1e-4)
        x_back, _ = scorekit.decode(rec, sde, z, method=method, rtol=1e-4, atol=1e-4, dtype=dtype)
        assert torch.isfinite(z).all() and torch.isfinite(x_back).all()
        rec.assert_inside(sde, sde.sampling_eps)
    rec = TimeRecorder(GaussianScore(MEAN, COV, sde), torch.float32)
    logp, _ = scorekit.log_likelihood(rec, sde, x, method=method, rtol=1e-4, atol=1e-4,
                                      generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(logp).all()
    rec.assert_inside(sde, sde.sampling_eps)


# --- callbacks ---------------------------------------------------------------------------------------------------
FIXED = {k: v for k, v in SAMPLERS.items() if v.get("method") != "dopri5"}


@pytest.mark.parametrize("denoise", [True, False], ids=["denoise", "raw"])
@pytest.mark.parametrize("label", list(FIXED))
def test_callback_runs_every_step_and_its_latents_are_used(label, denoise):
    sde, kwargs = VPSDE(), FIXED[label]
    score = GaussianScore(MEAN, COV, sde)
    steps = kwargs["steps"]
    seen_inputs, replaced, calls = [], {}, []

    def recording_score(x, t):
        seen_inputs.append(x.clone())
        return score(x, t)

    def callback(i, t, x):
        calls.append(i)
        replaced[i] = torch.full_like(x, 0.1 * (i + 1))  # a recognisable replacement
        seen_inputs.append(("after", i))
        return replaced[i]

    x, info = scorekit.sample(recording_score, sde, SHAPE, callback=callback, denoise=denoise,
                              generator=torch.Generator().manual_seed(0), **kwargs)
    assert calls == list(range(steps)) and info["callback_steps"] == steps
    for i in range(steps):  # the first score call after callback i sees its latents
        k = seen_inputs.index(("after", i))
        nxt = next((s for s in seen_inputs[k + 1:] if isinstance(s, torch.Tensor)), None)
        if i < steps - 1 or (denoise and kwargs["sampler"] in ("ode", "ddim")):
            assert nxt is not None and torch.equal(nxt, replaced[i]), f"step {i + 1} did not use the callback's x"
    last = replaced[steps - 1]
    if denoise and kwargs["sampler"] in ("ode", "ddim"):  # Tweedie's denoising of the callback's latents
        eps = torch.full((SHAPE[0],), sde.sampling_eps)
        assert torch.allclose(x, scorekit.tweedie_denoise(last, eps, score, sde))
    else:  # PC / ALD return the callback's tensor (the noise-free mean when denoising), and so does denoise=False
        assert torch.equal(x, last)


def test_adaptive_solvers_do_not_call_the_callback():
    sde = VPSDE()
    calls = []
    x, info = scorekit.sample(GaussianScore(MEAN, COV, sde), sde, SHAPE, sampler="ode", method="dopri5",
                              callback=lambda i, t, x: calls.append(i))
    assert calls == [] and info["callback_steps"] == 0 and torch.isfinite(x).all()


# --- degenerate steps and non-finite values -----------------------------------------------------------------------
@pytest.mark.parametrize("corrector", ["langevin", "ald"])
def test_zero_score_gives_a_finite_sample(corrector):
    sde = VESDE()
    x, _ = scorekit.sample(lambda x, t: torch.zeros_like(x), sde, SHAPE, steps=5, corrector=corrector,
                           generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()


def test_scheduler_corrector_with_zero_model_output_is_a_zero_step():
    sched = scorekit.ScoreSDEPCScheduler(sde_type="ve", prediction_type="score")
    sched.set_timesteps(5)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    out = sched.step_correct(torch.zeros_like(x), sched.timesteps[0], x, generator=torch.Generator())
    assert torch.equal(out.prev_sample, x) and torch.equal(out.prev_sample_mean, x)


def test_float16_scheduler_step_keeps_coefficients_in_float32():
    # sigma_max^2 = 1348^2 > 65504: a float16 step must not compute the SMLD variance in float16
    sched = scorekit.ScoreSDEPCScheduler(sde_type="ve", sigma_max=1348.0, prediction_type="score")
    sched.set_timesteps(10)
    x = (1348 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))).half()
    out = sched.step(-x / 1348**2, sched.timesteps[0], x, generator=torch.Generator().manual_seed(0))
    assert out.prev_sample.dtype == torch.float16 and torch.isfinite(out.prev_sample).all()


class BrokenStepSDE(VPSDE):
    """A VP SDE whose discretization turns NaN below t = 0.5: the step fails while the score stays finite."""

    def discretize(self, x, t, t_next):
        f, G = super().discretize(x, t, t_next)
        return f, torch.where(t < 0.5, torch.full_like(G, float("nan")), G)


def test_non_finite_step_is_named_not_the_model():
    sde = BrokenStepSDE()
    with pytest.raises(ValueError, match=r"pc step 7 of 10, at t=0\.4.* produced non-finite values \(NaN or inf\) "
                                         r"from finite score_fn outputs"):
        scorekit.sample(GaussianScore(MEAN, COV, sde), sde, SHAPE, steps=10, corrector="none")


def test_non_finite_callback_latents_are_not_blamed_on_the_model():
    sde = VPSDE()
    with pytest.raises(ValueError, match=r"pc step 3 of 10.*\(or the callback / condition after it\)"):
        scorekit.sample(GaussianScore(MEAN, COV, sde), sde, SHAPE, steps=10,
                        callback=lambda i, t, x: x * float("nan") if i == 2 else None)


def test_generator_lists_and_devices_follow_diffusers():
    # A list of generators draws sample i from generator i; a generator's own device is where draws are made.
    sde = VPSDE()
    score = GaussianScore(MEAN, COV, sde)
    gens = [torch.Generator().manual_seed(s) for s in range(SHAPE[0])]
    x, _ = scorekit.sample(score, sde, SHAPE, steps=3, corrector="none", generator=gens)
    one, _ = scorekit.sample(score, sde, (1, 2), steps=3, corrector="none",
                             generator=[torch.Generator().manual_seed(2)])
    assert torch.equal(x[2:3], one)
    probes = scorekit.likelihood.draw_probes(2, torch.zeros(3, 2), "gaussian", torch.Generator().manual_seed(0))
    assert probes.shape == (2, 3, 2)


def test_float16_pipeline_samples_and_reads_exact_8bit_images(tmp_path):
    # The 8-bit levels are read before the cast to the UNet's dtype (float16 cannot hold the 1/255 grid near 1).
    from hub_layouts import make_ddpm_cifar10_folder

    from scorekit.pipelines import ScoreSDEPipeline

    # bfloat16 takes the same code path (and is ~4x slower on these CPUs)
    pipe = ScoreSDEPipeline.from_pretrained(make_ddpm_cifar10_folder(str(tmp_path / "m"))).to(dtype=torch.float16)
    pipe.set_progress_bar_config(disable=True)
    images = torch.randint(0, 256, (1, 3, 8, 8), generator=torch.Generator().manual_seed(0)) / 255
    out = pipe.log_likelihood(images, rtol=5e-2, atol=5e-2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.bits_per_dim).all()
    sampled = pipe(batch_size=2, num_inference_steps=2, sampler="ddim", output_type="pt",
                   generator=torch.Generator().manual_seed(0)).images
    assert torch.isfinite(sampled).all()
