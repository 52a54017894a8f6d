"""Linear observations ``y = A x + sigma_y e``: the operator interface, its SVD applied as functions, the observation.

The vocabulary is deepinv's (``physics/forward.py``): ``forward`` (``A``), ``adjoint`` (``A^T``), ``pseudo_inverse``
(``A^+``) and, where it is cheap, a singular value decomposition ``A = U diag(s) V^T`` carried as four functions
(never dense matrices for images). The built-in operators are in :mod:`scorekit.conditioning.operators`.

Contract (shared by the methods in :mod:`scorekit.conditioning` and the particle samplers):

- ``A`` maps ``x`` of shape ``(B, *in_shape)`` to ``y`` of shape ``(B, *out_shape)`` for any batch size ``B`` (the
  flat ``(B, D)`` toy shape included). ``batch_size`` is ``None`` for such operators; an operator that differs per
  sample (a per-sample inpainting mask) sets it to its ``B`` and then applies to batches of exactly that size.
- Spectral coordinates are flat and real: ``(B, D)`` with ``D = prod(in_shape)``. ``svd.s`` holds ``D`` singular
  values ``>= 0`` aligned with ``V``'s coordinates, 0 on the null space; it is ``(D,)``, or ``(B, D)`` for a
  per-sample operator (the one deviation from the first draft of the contract: broadcast ``s`` against ``(B, D)``).
- ``V_adjoint`` / ``V`` are orthonormal (``V(V_adjoint(x)) == x``); ``U_adjoint(y)`` returns the observation's
  coordinates aligned with ``V``'s, 0 where ``s == 0`` (the part of ``y`` outside the range of ``A`` is dropped: it
  carries no information on ``x``); ``U(c)`` reads only the coordinates where ``s > 0``. Hence
  ``forward(x) == U(s * V_adjoint(x))`` and ``adjoint(y) == V(s * U_adjoint(y))``.
- :class:`Observation` is ``(operator, y, sigma_y)`` with ``y`` of shape ``(B or 1, *out_shape)`` and
  ``sigma_y >= 0`` (0 = noiseless), validated on construction.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch


def check_event_shape(name: str, shape) -> tuple[int, ...]:
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not shape or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints (an event shape), got {shape!r}")
    return tuple(int(s) for s in shape)


def _shape_str(shape: tuple[int, ...]) -> str:
    return ", ".join(map(str, shape))


class SVD:
    """``A = U diag(s) V^T`` applied as functions, in flat real spectral coordinates ``(B, D)``.

    Args:
        s: ``(D,)`` (or ``(B, D)`` for a per-sample operator) singular values ``>= 0``, 0 on the null space.
        V_adjoint: ``x (B, *in_shape) -> (B, D)``, orthonormal.
        V: ``c (B, D) -> (B, *in_shape)``, the inverse of ``V_adjoint``.
        U_adjoint: ``y (B, *out_shape) -> (B, D)``; entries where ``s == 0`` are zeroed here.
        U: ``c (B, D) -> (B, *out_shape)``; entries of ``c`` where ``s == 0`` are ignored (zeroed here).
    """

    def __init__(self, s: torch.Tensor, V_adjoint: Callable, V: Callable, U_adjoint: Callable, U: Callable):
        s = torch.as_tensor(s, dtype=torch.float64)
        if s.ndim not in (1, 2) or (s < 0).any() or not torch.isfinite(s).all():
            raise ValueError(f"s must be (D,) or (B, D) finite singular values >= 0, got shape {tuple(s.shape)}")
        self.s, self.support = s, s > 0
        self._V_adjoint, self._V, self._U_adjoint, self._U = V_adjoint, V, U_adjoint, U
        self._cache: dict = {}

    def s_like(self, c: torch.Tensor) -> torch.Tensor:
        """``s`` in ``c``'s dtype and device (cached)."""
        key = (c.dtype, c.device)
        if key not in self._cache:
            self._cache[key] = self.s.to(dtype=c.dtype, device=c.device)
        return self._cache[key]

    def V_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        return self._V_adjoint(x)

    def V(self, c: torch.Tensor) -> torch.Tensor:
        return self._V(c)

    def U_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._U_adjoint(y) * (self.s_like(y) > 0)

    def U(self, c: torch.Tensor) -> torch.Tensor:
        return self._U(c * (self.s_like(c) > 0))


class LinearOperator:
    """A linear map ``x (B, *in_shape) -> y (B, *out_shape)``; subclasses define ``forward`` and ``adjoint``.

    Args:
        in_shape: event shape of ``x``.
        out_shape: event shape of ``y``.
    """

    batch_size: int | None = None  # set by operators that differ per sample (see the module doc)

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
        self.in_shape = check_event_shape("in_shape", in_shape)
        self.out_shape = check_event_shape("out_shape", out_shape)
        self._buffers: dict = {}

    @property
    def in_dim(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_dim(self) -> int:
        return math.prod(self.out_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A x``: ``(B, *in_shape) -> (B, *out_shape)``."""
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y``: ``(B, *out_shape) -> (B, *in_shape)``, with ``<A x, y> = <x, A^T y>``."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    @property
    def svd(self) -> SVD | None:
        """The SVD as functions, or ``None`` when there is no cheap one."""
        return None

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y = V diag(1 / s) U^T y`` (0 where ``s == 0``): ``(B, *out_shape) -> (B, *in_shape)``."""
        svd = self.require_svd("pseudo_inverse")
        s = svd.s_like(y)
        return svd.V(torch.where(s > 0, svd.U_adjoint(y) / torch.where(s > 0, s, 1), 0))

    def require_svd(self, who: str) -> SVD:
        """The SVD, or a ValueError naming ``who`` needs it and what the operator is."""
        svd = self.svd
        if svd is None:
            raise ValueError(f"{who} needs an operator with an SVD, but {type(self).__name__} has none (svd is "
                             f"None); use a method without one (e.g. DPS) or an operator with an SVD (Mask, Gray, "
                             f"Downsample, Blur, Matrix)")
        return svd

    def __matmul__(self, other: LinearOperator) -> LinearOperator:
        """The composition ``self o other`` (``x -> self(other(x))``), without an SVD."""
        return ComposedOperator(self, other)

    def matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The dense ``(prod(out_shape), prod(in_shape))`` matrix (small problems only: tests, exact oracles)."""
        eye = torch.eye(self.in_dim, dtype=dtype).reshape(self.in_dim, *self.in_shape)
        return self.forward(eye).reshape(self.in_dim, self.out_dim).T

    def _buffer(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The float64 attribute ``name`` in ``like``'s dtype and device, cached (no per-call conversions)."""
        key = (name, like.dtype, like.device)
        if key not in self._buffers:
            value, real = getattr(self, name), like.real.dtype if like.is_complex() else like.dtype
            if value.is_complex():
                dtype = torch.complex128 if real == torch.float64 else torch.complex64
            else:
                dtype = real if value.is_floating_point() else value.dtype
            self._buffers[key] = value.to(device=like.device, dtype=dtype)
        return self._buffers[key]


class ComposedOperator(LinearOperator):
    """``outer o inner``: ``x -> outer(inner(x))``; adjoint ``inner^T(outer^T(y))``; no SVD."""

    def __init__(self, outer: LinearOperator, inner: LinearOperator):
        for name, op in (("outer", outer), ("inner", inner)):
            if not isinstance(op, LinearOperator):
                raise TypeError(f"{name} must be a LinearOperator, got {type(op).__name__}")
        if inner.out_shape != outer.in_shape:
            raise ValueError(f"cannot compose: inner.out_shape = {inner.out_shape} but outer.in_shape = "
                             f"{outer.in_shape}")
        super().__init__(inner.in_shape, outer.out_shape)
        self.outer, self.inner = outer, inner
        sizes = {op.batch_size for op in (outer, inner)} - {None}
        if len(sizes) > 1:
            raise ValueError(f"cannot compose per-sample operators of batch sizes {sorted(sizes)}")
        self.batch_size = sizes.pop() if sizes else None

    def forward(self, x):
        return self.outer.forward(self.inner.forward(x))

    def adjoint(self, y):
        return self.inner.adjoint(self.outer.adjoint(y))


class Observation:
    """A linear-Gaussian observation ``y = A x + sigma_y e``, ``e ~ N(0, I)``.

    Args:
        operator: the :class:`LinearOperator` ``A``.
        y: ``(B or 1, *out_shape)`` observed values (an unbatched ``out_shape`` tensor is taken as ``B = 1``); a
            batch of 1 applies to every sample.
        sigma_y: noise standard deviation, ``>= 0`` (0 = noiseless).

    Raises:
        TypeError / ValueError: naming ``operator``, ``y`` or ``sigma_y`` (wrong type, shape, non-finite values,
            negative noise).
    """

    def __init__(self, operator: LinearOperator, y: torch.Tensor, sigma_y: float = 0.0):
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a scorekit LinearOperator (Mask, Gray, Downsample, Blur, Matrix, ...), "
                            f"got {type(operator).__name__}")
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a torch.Tensor of shape (B or 1, {_shape_str(operator.out_shape)}), got "
                            f"{type(y).__name__}")
        y = y if y.is_floating_point() else y.to(torch.get_default_dtype())
        if y.ndim == len(operator.out_shape) and tuple(y.shape) == operator.out_shape:
            y = y[None]
        batches = (1,) if operator.batch_size is None else (1, operator.batch_size)
        if y.ndim != len(operator.out_shape) + 1 or tuple(y.shape[1:]) != operator.out_shape:
            raise ValueError(f"y has shape {tuple(y.shape)} but operator.out_shape = {operator.out_shape}; expected "
                             f"(B or 1, {_shape_str(operator.out_shape)})")
        if operator.batch_size is not None and y.shape[0] not in batches:
            raise ValueError(f"y has batch {y.shape[0]} but the operator is per-sample with batch_size "
                             f"{operator.batch_size}; expected 1 or {operator.batch_size}")
        if not torch.isfinite(y).all():
            raise ValueError("y has NaN or inf values")
        if isinstance(sigma_y, bool) or not isinstance(sigma_y, numbers.Real) or not math.isfinite(sigma_y) \
                or sigma_y < 0:
            raise ValueError(f"sigma_y must be a finite number >= 0 (0 = noiseless), got {sigma_y!r}")
        self.operator, self.y, self.sigma_y = operator, y, float(sigma_y)

    @property
    def noiseless(self) -> bool:
        return self.sigma_y == 0

    def check_samples(self, shape: tuple[int, ...], name: str = "the samples") -> None:
        """ValueError before any work when samples of ``shape`` do not fit the operator or ``y``'s batch."""
        shape, event = tuple(shape), self.operator.in_shape
        if tuple(shape[1:]) != event:
            raise ValueError(f"{name} have shape {shape} but operator.in_shape = {event}; expected (B, "
                             f"{_shape_str(event)}) (is the operator built for the model's sample size?)")
        if self.y.shape[0] not in (1, shape[0]):
            raise ValueError(f"y has batch {self.y.shape[0]} but {name} have batch {shape[0]}; give one observation "
                             f"per sample or a single one")
        if self.operator.batch_size not in (None, shape[0]):
            raise ValueError(f"the operator is per-sample with batch_size {self.operator.batch_size} but {name} have "
                             f"batch {shape[0]}")

    def y_like(self, x: torch.Tensor) -> torch.Tensor:
        """``y`` in ``x``'s dtype and device, expanded to ``x``'s batch: ``(B, *out_shape)``."""
        return self.y.to(dtype=x.dtype, device=x.device).expand(x.shape[0], *self.operator.out_shape)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``y - A x``: ``(B, *out_shape)``."""
        return self.y_like(x) - self.operator.forward(x)


def adjointness_error(operator: LinearOperator, batch_size: int = 3, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float64) -> float:
    """``max_b |<A x, y> - <x, A^T y>| / (|A x| |y| + |x| |A^T y|)`` on random ``x``, ``y`` (float error: ~1e-16 in
    float64 for an exact adjoint). deepinv's ``adjointness_test`` per sample."""
    batch = operator.batch_size or batch_size
    x = torch.randn(batch, *operator.in_shape, generator=generator, dtype=dtype)
    y = torch.randn(batch, *operator.out_shape, generator=generator, dtype=dtype)
    ax, aty = operator.forward(x).reshape(batch, -1), operator.adjoint(y).reshape(batch, -1)
    x, y = x.reshape(batch, -1), y.reshape(batch, -1)
    scale = ax.norm(dim=1) * y.norm(dim=1) + x.norm(dim=1) * aty.norm(dim=1)
    return ((ax * y).sum(1) - (x * aty).sum(1)).abs().div(scale).max().item()


def svd_errors(operator: LinearOperator, batch_size: int = 3, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """Relative errors of the SVD's identities on random inputs (all ~1e-15 in float64 for a consistent SVD).

    Keys: ``forward`` (``A x`` vs ``U(s V^T x)``), ``adjoint`` (``A^T y`` vs ``V(s U^T y)``), ``V`` (``V V^T x = x``),
    ``V_adjoint`` (``V^T V c = c``), ``U`` (``U^T U c = c`` on the support), ``shapes`` (0 when every output has the
    contract's shape, else 1).
    """
    svd = operator.require_svd("svd_errors")
    batch, dim = operator.batch_size or batch_size, operator.in_dim
    x = torch.randn(batch, *operator.in_shape, generator=generator, dtype=dtype)
    y = torch.randn(batch, *operator.out_shape, generator=generator, dtype=dtype)
    c = torch.randn(batch, dim, generator=generator, dtype=dtype)
    s, support = svd.s_like(c), svd.s_like(c) > 0
    vx, uy, vc, uc = svd.V_adjoint(x), svd.U_adjoint(y), svd.V(c), svd.U(c)
    shapes = [tuple(t.shape) for t in (vx, uy, vc, uc)]
    shapes_ok = shapes == [(batch, dim), (batch, dim), (batch, *operator.in_shape), (batch, *operator.out_shape)]

    def rel(a, b):
        return ((a - b).norm() / b.norm().clamp_min(torch.finfo(dtype).tiny)).item()

    return {"forward": rel(svd.U(s * vx), operator.forward(x)), "adjoint": rel(svd.V(s * uy), operator.adjoint(y)),
            "V": rel(svd.V(vx), x), "V_adjoint": rel(svd.V_adjoint(vc), c),
            "U": rel(svd.U_adjoint(uc), torch.where(support, c, 0)), "shapes": 0.0 if shapes_ok else 1.0}
