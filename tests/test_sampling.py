"""The front door ``scorekit.sample`` (scorekit/sampling.py): the same behaviour for every registered sampler.

- one image, one seed: with one generator per image, an image is the same alone as in a batch;
- the callback's ``t`` has one dtype, every sampler shows progress, the NaN guard names a time, ``info`` has the
  same keys.

The score here is elementwise (an isotropic Gaussian's, ``-(x - alpha m) / (alpha^2 v + std^2)``), so every
computation of a grid sampler is per sample and "alone" must equal "in a batch" bit for bit. Adaptive solvers choose
one step sequence for the whole batch (their error norm runs over it): their images agree up to the solve's error,
bounded by the sum of the local error tolerances over the evaluations made.
"""

from __future__ import annotations

import pytest
import torch

import scorekit
from scorekit.conditioning import DDRM, TDS, Mask, MCGdiff, Observation
from scorekit.samplers.registry import REGISTRY
from scorekit.sde import VPSDE

D = 64  # coordinates per sample: the PC corrector's default "auto" takes per-sample norms from 64 up
MEAN, VAR = 0.3, 0.5
ADAPTIVE = {"dpmsolver-adaptive": dict(rtol=1e-6, atol=1e-6), "ode": dict(method="dopri5", rtol=1e-6, atol=1e-6)}
SETTINGS = {  # a few steps of every sampler; stochastic ones where they can be
    "pc": dict(steps=6), "ode": dict(method="heun", steps=4), "ddim": dict(eta=1.0, steps=4),
    "ald": dict(steps=4, n_corrector_steps=2), "dpmsolver++": dict(steps=4),
    "dpmsolver++-singlestep": dict(steps=5), "sde-dpmsolver++": dict(steps=4),
    "edm-heun": dict(steps=4, s_churn=20.0), "dpmsolver-adaptive": ADAPTIVE["dpmsolver-adaptive"],
    "ddrm": dict(steps=4, condition=DDRM(Observation(Mask(torch.arange(D) % 3 == 0), torch.full((1, D), 0.2), 0.1))),
    "tds": dict(steps=4, num_particles=3, condition=TDS(Observation(Mask(torch.arange(D) % 3 == 0),
                                                                    torch.full((1, D), 0.2), 0.1))),
    "mcgdiff": dict(steps=4, num_particles=3, condition=MCGdiff(Observation(Mask(torch.arange(D) % 3 == 0),
                                                                            torch.full((1, D), 0.2), 0.1))),
}


SDE = VPSDE()


def elementwise_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    alpha, std = (c.reshape(-1, *([1] * (x.ndim - 1))) for c in SDE.marginal_coef(t))
    return -(x - alpha * MEAN) / (alpha**2 * VAR + std**2)


def run(sampler: str, seeds, **kwargs):
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return scorekit.sample(elementwise_score, VPSDE(), (len(seeds), D), sampler=sampler, generator=gens,
                           dtype=torch.float64, **{**SETTINGS[sampler], **kwargs})


def test_settings_cover_the_registry():
    assert set(SETTINGS) == set(REGISTRY)


@pytest.mark.parametrize("sampler", [s for s in SETTINGS if s != "dpmsolver-adaptive"])
def test_one_image_one_seed(sampler):
    batch, _ = run(sampler, [11, 12, 13])
    alone, _ = run(sampler, [12])
    assert torch.equal(batch[1:2], alone), f"{sampler}: max diff {(batch[1:2] - alone).abs().max():.3g}"


@pytest.mark.parametrize("label", list(ADAPTIVE))
def test_adaptive_solvers_agree_up_to_their_tolerance(label):
    sampler = "ode" if label == "ode" else label
    kwargs = ADAPTIVE[label]
    batch, info = run(sampler, [11, 12, 13], **kwargs)
    alone, info_alone = run(sampler, [12], **kwargs)
    # Each solve's global error is at most the sum of its local errors (a contracting flow: Gaussian data of
    # variance 0.5 < 1), each accepted step's at most atol + rtol |x|; there are fewer accepted steps than NFE.
    scale = kwargs["atol"] + kwargs["rtol"] * batch.abs().max().item()
    bound = (info["nfe"] + info_alone["nfe"]) * scale
    assert (batch[1:2] - alone).abs().max().item() <= bound


def test_batch_mean_langevin_couples_the_batch():
    """The paper's batch-mean step (snr_norm="batch") makes an image depend on its batch-mates: the per-sample
    default is what makes them independent."""
    batch, _ = run("pc", [11, 12, 13], snr_norm="batch")
    alone, _ = run("pc", [12], snr_norm="batch")
    assert not torch.equal(batch[1:2], alone)


# --- uniform behaviour -------------------------------------------------------------------------------------------
def nan_below_half(x, t):
    return elementwise_score(x, t) / (t.reshape(-1, 1) > 0.5)


@pytest.mark.parametrize("model_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sampler", list(SETTINGS))
def test_callback_t_is_a_0_dim_tensor_in_the_compute_dtype(sampler, model_dtype):
    seen = []
    kwargs = {**SETTINGS[sampler], **({"rtol": 1e-3, "atol": 1e-3} if sampler in ADAPTIVE else {})}
    if sampler == "ode":
        kwargs = SETTINGS["ode"]
    scorekit.sample(elementwise_score, VPSDE(), (2, D), sampler=sampler, dtype=model_dtype,
                    callback=lambda i, t, x: seen.append(t), generator=torch.Generator().manual_seed(0), **kwargs)
    assert seen and all(isinstance(t, torch.Tensor) and t.ndim == 0 and t.dtype == model_dtype for t in seen)


@pytest.mark.parametrize("sampler", list(SETTINGS) + ["ode-dopri5"])
def test_every_sampler_shows_progress_and_the_same_info(sampler):
    ticks = []

    def progress(iterable):
        for i in iterable:
            ticks.append(i)
            yield i

    kwargs = dict(method="dopri5", rtol=1e-3, atol=1e-3) if sampler == "ode-dopri5" else SETTINGS[sampler]
    _, info = scorekit.sample(elementwise_score, VPSDE(), (2, D), sampler=sampler.removesuffix("-dopri5"),
                              progress=progress, generator=torch.Generator().manual_seed(0), **kwargs)
    assert ticks, f"{sampler}: no progress"
    assert ticks == list(range(len(ticks)))  # the bar ran to its end, in order
    assert set(info) == {"nfe", "sampler", "steps", "eps", "denoise", "callback_steps", "options", "particles"}
    expected_steps = kwargs.get("steps")
    if sampler in ("ode-dopri5", "dpmsolver-adaptive"):
        assert ticks[-1] == 99  # percent of the way
    else:
        assert info["steps"] == expected_steps and len(ticks) == expected_steps


@pytest.mark.parametrize("sampler", list(SETTINGS) + ["ode-dopri5"])
def test_nan_guard_names_a_time_for_every_sampler(sampler):
    kwargs = dict(method="dopri5") if sampler == "ode-dopri5" else SETTINGS[sampler]
    with pytest.raises(ValueError, match=r"score_fn returned non-finite values .*t=\d"):
        scorekit.sample(nan_below_half, VPSDE(), (2, D), sampler=sampler.removesuffix("-dopri5"),
                        generator=torch.Generator().manual_seed(0), **kwargs)
