"""scorekit's numeric and device policy, written down once, and the mechanisms that enforce it.

Numeric policy
    * The **compute dtype** of a run is float64 when the model's dtype is float64 and float32 otherwise
      (:func:`compute_dtype`). SDE coefficients (``alpha``, ``std``, ``g``, ``beta``), time grids, the state of every
      solver (fixed-step and adaptive) and the likelihood's divergence integrals live in it, whatever the model's
      dtype: float16 cannot hold ``sigma_max^2`` of the NCSN++ schedules (348^2-1348^2 > 65504) nor resolve
      ``t`` near ``eps``, and bfloat16 keeps 8 bits of mantissa.
    * The model is called in **its own dtype**: :class:`CountedScore` casts ``x`` to the model dtype before the call
      (the time ``t`` stays in the compute dtype; the score adapter casts the network's time input itself) and casts
      the returned score back to the compute dtype. Samples are returned in the model dtype by ``sample`` /
      ``decode``; latents and log-likelihoods stay in the compute dtype.

Device policy for random draws (diffusers' convention)
    A ``torch.Generator`` may live on another device than the model: every draw is made on the generator's device
    and then moved (:func:`scorekit.utils.randn`, :func:`scorekit.utils.rand`); a list of ``B`` generators draws
    row ``i`` from ``generator[i]``. This holds for the prior, every sampler's noise, Hutchinson probes and
    dequantization noise.

No silent NaN, without a host synchronisation per score call
    :class:`FiniteGuard` records, on the device, whether each score output and each step's result was finite
    (one reduction per tensor, no ``.item()``), and synchronises once every :data:`CHECK_EVERY` steps and at the end
    of the run. A non-finite result raises a ``ValueError`` naming the step that produced it; when the model's
    output itself was non-finite first (at that step or earlier) the error names the model instead.

Callbacks
    :func:`apply_callback` is the one rule for ``callback(i, t, x)``: it is called after every step of a fixed-step
    sampler, including the last; it receives the tensor the next step (or, after the last step, the output or
    the final denoising) uses, and what it returns replaces that tensor. The adaptive torchdiffeq / scipy ODE solves
    do not call it (their steps are chosen inside the solver); the adaptive DPM-Solver (``"dpmsolver-adaptive"``)
    calls it after every accepted step. ``t`` is the step's end time as a 0-dim tensor in the compute dtype, for
    every sampler (``scorekit.samplers.base.RunContext.end_step``). ``info["callback_steps"]`` reports the calls
    made.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

CHECK_EVERY = 10  # steps between the host synchronisations of FiniteGuard (and always at the end of a run)


def compute_dtype(model_dtype: torch.dtype) -> torch.dtype:
    """The dtype of coefficients, times and solver state for a model in ``model_dtype``: float64 or float32."""
    return torch.float64 if model_dtype == torch.float64 else torch.float32


class FiniteGuard:
    """Deferred finiteness checks of score outputs and step results; one host sync per :data:`CHECK_EVERY` steps.

    Usage inside a sampler loop (``counted`` a :class:`CountedScore`, whose outputs the guard watches)::

        guard = counted.guard.start("pc", times)     # times: host floats of the grid, for messages
        for i in range(steps):
            x = step(x, ...)
            x = guard.end_step(x, i)                 # records isfinite(x) on the device; syncs every CHECK_EVERY
        guard.check()                                # final sync (also done by ``finish``)

    Args:
        name: what produced the watched outputs, e.g. ``"score_fn"``.
    """

    def __init__(self, name: str = "score_fn"):
        self.name = name
        self.start("sampler")

    def start(self, sampler: str, times: list[float] | None = None, check_every: int = CHECK_EVERY) -> FiniteGuard:
        """Begin a run of ``sampler`` whose step ``i`` goes from ``times[i]`` to ``times[i + 1]``."""
        self.sampler, self.times, self.check_every = sampler, times, check_every
        # (step index, stage, 0-dim bool "not finite"); stage 0: a score input, 1: a score output, 2: a step result
        self._flags: list[tuple[int, int, torch.Tensor]] = []
        self._step = 0
        self._ends: dict[int, float] = {}  # end time of step i, for solves that choose their steps (no `times`)
        return self

    def at_time(self, i: int, t: float) -> None:
        """Record that step ``i`` of a solve without a fixed grid ends at time ``t`` (for messages)."""
        self._ends[i] = t

    @property
    def steps_taken(self) -> int | None:
        """Steps ended so far (``None`` when none were: a solve whose steps happen inside a library)."""
        return self._step or None

    def watch(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Record (on the device) whether a score call's input ``x`` and output ``out`` are finite; returns ``out``."""
        self._flags.append((self._step, 0, ~torch.isfinite(x).all()))
        self._flags.append((self._step, 1, ~torch.isfinite(out).all()))
        return out

    def end_step(self, x: torch.Tensor, i: int | None = None) -> torch.Tensor:
        """Record whether step ``i``'s result ``x`` is finite; check every ``check_every`` steps; returns ``x``."""
        i = self._step if i is None else i
        self._flags.append((i, 2, ~torch.isfinite(x).all()))
        self._step = i + 1
        if self.check_every and (i + 1) % self.check_every == 0:
            self.check()
        return x

    def check(self) -> None:
        """Synchronise once and raise a ValueError naming what first went non-finite: a step, or the model."""
        flags, self._flags = self._flags, []
        if not flags:
            return
        bad = torch.stack([f for _, _, f in flags]).tolist()  # the one host sync
        k = next((k for k, b in enumerate(bad) if b), None)  # flags are in the order the events happened
        if k is None:
            return
        i, stage, _ = flags[k]
        if stage == 1:
            raise ValueError(f"{self.name} returned non-finite values (NaN or inf) in {self._where(i)}; its input "
                             f"was finite: check the model, its weights and the data scaling")
        if stage == 0 and (k == 0 or flags[k - 1][0] != i):  # a non-finite input at the start of step i
            what = self._where(i - 1) + " (or the callback / condition after it)"
        else:
            what = self._where(i)
        cast = "" if stage != 0 else " (or values beyond the range of the dtype the model is called in)"
        raise ValueError(f"{what} produced non-finite values (NaN or inf){cast} from finite {self.name} outputs: "
                         f"a numerical failure of the step, not of the model")

    def _where(self, i: int) -> str:
        if i < 0:
            return "the input x_T"
        if self.times is None:
            if i - 1 in self._ends:
                return f"{self.sampler} step {i + 1}, after t={self._ends[i - 1]:.4g}"
            return f"the {self.sampler}" if i == 0 else f"{self.sampler} step {i + 1}"
        if i >= len(self.times) - 1:
            return f"the final {self.sampler} stage, at t={self.times[-1]:.4g}"
        return (f"{self.sampler} step {i + 1} of {len(self.times) - 1}, at t={self.times[i]:.4g} "
                f"(stepping to t={self.times[i + 1]:.4g})")


class CountedScore:
    """Wrap ``score_fn`` to count evaluations (NFE), call it in the model's dtype and watch its finiteness.

    ``x`` is cast to ``model_dtype`` for the call and the output back to ``x``'s dtype (the compute dtype); the
    output's shape is checked on the host (free), its finiteness on the device through :attr:`guard`.

    Args:
        score_fn: ``score_fn(x, t) -> score`` shaped like ``x``.
        name: the name errors use.
        model_dtype: dtype the model is called in; ``None`` keeps ``x``'s dtype.
    """

    def __init__(self, score_fn: Callable, name: str = "score_fn", model_dtype: torch.dtype | None = None):
        if not callable(score_fn):
            raise TypeError(f"{name} must be callable as score_fn(x, t), got {type(score_fn).__name__}")
        self.score_fn, self.name, self.nfe, self.model_dtype = score_fn, name, 0, model_dtype
        self.guard = FiniteGuard(name)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x_in = x if self.model_dtype is None else x.to(self.model_dtype)
        out = self.score_fn(x_in, t)
        self.nfe += 1
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{self.name} must return a tensor shaped like x {tuple(x.shape)}, got {got}")
        return self.guard.watch(x_in, out).to(x.dtype)  # x_in: a cast overflow counts as non-finite


def apply_callback(callback: Callable | None, i: int, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """The callback rule: ``callback(i, t, x)`` may return a tensor shaped like ``x`` that replaces it (cast to
    ``x``'s dtype and device); ``None`` keeps ``x``."""
    if callback is None:
        return x
    out = callback(i, t, x)
    if out is None:
        return x
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"callback must return None or a tensor shaped like x {tuple(x.shape)}, got {got}")
    return out.to(dtype=x.dtype, device=x.device)
