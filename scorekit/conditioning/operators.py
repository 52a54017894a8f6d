"""Built-in linear operators for inverse problems, each with forward, adjoint and an SVD applied as functions.

- :class:`Mask` (inpainting): ``y = m * x``; ``V = U = I``, ``s = m``.
- :class:`Gray` (colorization): ``y = mean(R, G, B)``; ``V`` is the gray/chroma rotation :data:`DECOUPLE` per pixel,
  ``s = 1 / sqrt(3)`` on the gray coordinate.
- :class:`Downsample` (super-resolution): average pooling by an integer factor ``f``; per block of ``n = f^k``
  pixels ``V`` is an orthonormal DCT-II whose first row is ``1 / sqrt(n)``, ``s = 1 / sqrt(n)`` on it.
- :class:`Blur` (deblurring): circular convolution by a known kernel, diagonal in the Fourier basis; ``V`` is the
  real orthonormal Fourier basis and the kernel's phases are moved into ``U``, so the coordinates stay real.
- :class:`Matrix` (random projections, compressed sensing): any dense ``(d_y, d_x)`` matrix, SVD by
  ``torch.linalg.svd`` once.

The contract (shapes, spectral coordinates, :class:`~scorekit.conditioning.linear.Observation`) is in
:mod:`scorekit.conditioning.linear`; everything it defines is re-exported here.
"""

from __future__ import annotations

import math
import numbers

import torch

from .linear import (
    SVD,
    ComposedOperator,
    LinearOperator,
    Observation,
    adjointness_error,
    check_event_shape,
    svd_errors,
)

__all__ = ["LinearOperator", "SVD", "Observation", "ComposedOperator", "Mask", "Gray", "Downsample", "Blur", "Matrix",
           "DECOUPLE", "rgb_to_gray_chroma", "gray_chroma_to_rgb", "adjointness_error", "svd_errors"]

# Rows: gray (1, 1, 1)/sqrt(3), then two orthonormal chroma directions (1, -1, 0)/sqrt(2) and (1, 1, -2)/sqrt(6).
DECOUPLE = torch.tensor(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
        [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
        [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)],
    ],
    dtype=torch.float64,
)


def rgb_to_gray_chroma(x: torch.Tensor, decouple: torch.Tensor | None = None) -> torch.Tensor:
    """``u = DECOUPLE @ x`` along channel dim 1: ``(B, 3, ...) -> (B, 3, ...)``, ``u[:, 0] = sqrt(3) * mean(RGB)``
    (``decouple``: :data:`DECOUPLE` already in ``x``'s dtype and device, to skip the conversion)."""
    m = DECOUPLE.to(dtype=x.dtype, device=x.device) if decouple is None else decouple
    return torch.einsum("ij,bj...->bi...", m, x)


def gray_chroma_to_rgb(u: torch.Tensor, decouple: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of :func:`rgb_to_gray_chroma` (``DECOUPLE`` is orthogonal, so its inverse is its transpose)."""
    m = DECOUPLE.to(dtype=u.dtype, device=u.device) if decouple is None else decouple
    return torch.einsum("ij,bi...->bj...", m, u)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _pad(c: torch.Tensor, dim: int) -> torch.Tensor:
    """``(B, m)`` coordinates padded with zeros to ``(B, dim)``."""
    return torch.cat([c, c.new_zeros(c.shape[0], dim - c.shape[1])], 1)


def binary_mask(name: str, mask) -> torch.Tensor:
    """A 0/1 (or bool) mask as a bool tensor; anything else is a TypeError / ValueError naming ``name``."""
    if not isinstance(mask, torch.Tensor):
        try:
            mask = torch.as_tensor(mask)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a tensor (or array-like), got {type(mask).__name__}") from err
    if mask.dtype == torch.bool:
        return mask
    if mask.is_complex() or not ((mask == 0) | (mask == 1)).all():
        bad = mask[(mask != 0) & (mask != 1)].reshape(-1)[:3].tolist()
        raise ValueError(f"{name} must be binary (0/1 or bool), got values such as {bad}")
    return mask == 1


class Mask(LinearOperator):
    """Inpainting: ``y = mask * x`` (``out_shape == in_shape``; unobserved entries of ``y`` are ignored).

    Args:
        mask: 0/1 or bool, True where ``x`` is observed; broadcastable to ``in_shape``, or ``(B, ...)`` with a leading
            batch dim for a per-sample mask (then ``batch_size = B``; a leading 1 is shared).
        in_shape: event shape of ``x``; defaults to ``mask.shape``.
    """

    def __init__(self, mask, in_shape: tuple[int, ...] | None = None):
        mask = binary_mask("mask", mask)
        in_shape = check_event_shape("in_shape", tuple(mask.shape) if in_shape is None else in_shape)
        super().__init__(in_shape, in_shape)
        batch = None
        if mask.ndim == len(in_shape) + 1:
            batch, mask = (None, mask[0]) if mask.shape[0] == 1 else (mask.shape[0], mask)
        try:
            mask = mask.expand(*(() if batch is None else (batch,)), *in_shape).clone()
        except RuntimeError as err:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to in_shape {in_shape} (or to "
                             f"(B, {', '.join(map(str, in_shape))}) for a per-sample mask)") from err
        self.mask, self.batch_size = mask, batch
        s = _flat(mask.double()) if batch is not None else mask.double().reshape(-1)
        self._svd = SVD(s, _flat, self._unflat, lambda y: _flat(y * self._buffer("mask", y)), self._unflat)

    def _unflat(self, c: torch.Tensor) -> torch.Tensor:
        return c.reshape(c.shape[0], *self.in_shape)

    def forward(self, x):
        return x * self._buffer("mask", x)

    adjoint = forward  # a diagonal 0/1 matrix is its own transpose

    @property
    def svd(self) -> SVD:
        return self._svd


class Gray(LinearOperator):
    """Colorization: ``y = mean(R, G, B)`` per pixel, ``(B, 3, *spatial) -> (B, 1, *spatial)``.

    In the gray/chroma basis ``u = DECOUPLE @ x`` the gray coordinate is ``u_0 = sqrt(3) * gray``, so
    ``y = u_0 / sqrt(3)``: ``V^T = DECOUPLE`` per pixel (flat layout: the gray block first, then the two chroma
    blocks), ``s = 1 / sqrt(3)`` on the gray block and 0 on the chroma ones, ``U = I``.

    Args:
        in_shape: ``(3, *spatial)``.
    """

    def __init__(self, in_shape: tuple[int, ...]):
        in_shape = check_event_shape("in_shape", in_shape)
        if len(in_shape) < 2 or in_shape[0] != 3:
            raise ValueError(f"Gray needs in_shape (3, *spatial) with 3 channels first, got {in_shape}")
        super().__init__(in_shape, (1, *in_shape[1:]))
        pixels = math.prod(in_shape[1:])
        s = torch.cat([torch.full((pixels,), 1 / math.sqrt(3), dtype=torch.float64), torch.zeros(2 * pixels)])
        self.decouple = DECOUPLE  # cached per dtype / device by _buffer (no copy per call)
        self._svd = SVD(s, lambda x: _flat(rgb_to_gray_chroma(x, self._buffer("decouple", x))),
                        lambda c: gray_chroma_to_rgb(c.reshape(c.shape[0], *in_shape), self._buffer("decouple", c)),
                        lambda y: _pad(_flat(y), self.in_dim), lambda c: c[:, :pixels].reshape(-1, *self.out_shape))

    def forward(self, x):
        return x.mean(1, keepdim=True)

    def adjoint(self, y):
        return (y / 3).expand(y.shape[0], 3, *y.shape[2:])

    @property
    def svd(self) -> SVD:
        return self._svd


def _dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II ``(n, n)``; row 0 is ``1 / sqrt(n)``."""
    j = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * j[None] + 1) * j[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] = 1 / math.sqrt(n)
    return m


class Downsample(LinearOperator):
    """Super-resolution: average pooling by an integer ``factor`` over the spatial dims.

    The spatial dims are all but the first (channel) dim of ``in_shape``, or the only dim of a flat ``(D,)`` shape.
    Each block of ``n = factor^k`` pixels (``k`` spatial dims) maps to its mean ``(1/n) 1^T x_block``, whose one
    singular value is ``1 / sqrt(n)`` with right singular vector ``1 / sqrt(n)`` (row 0 of the block's orthonormal
    DCT-II ``Q``, the other rows spanning the null space). Flat spectral layout: coordinate ``j`` of every block,
    ``j = 0`` (the observed means) first.

    Args:
        in_shape: ``(C, *spatial)`` or ``(D,)``; every spatial size divisible by ``factor``.
        factor: integer ``>= 1``.
    """

    def __init__(self, in_shape: tuple[int, ...], factor: int):
        in_shape = check_event_shape("in_shape", in_shape)
        if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor < 1:
            raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
        self.lead = 0 if len(in_shape) == 1 else 1
        spatial = in_shape[self.lead:]
        if any(s % factor for s in spatial):
            raise ValueError(f"every spatial size of in_shape {in_shape} must be divisible by factor={factor}")
        self.factor, self.k = int(factor), len(spatial)
        super().__init__(in_shape, (*in_shape[:self.lead], *(s // factor for s in spatial)))
        self.n = factor**self.k
        q = _dct_matrix(factor)
        for _ in range(self.k - 1):
            q = torch.kron(q, _dct_matrix(factor))
        self.q, m = q, self.out_dim  # block index ordered as the (f, f, ...) offsets, row-major
        s = torch.cat([torch.full((m,), 1 / math.sqrt(self.n), dtype=torch.float64), torch.zeros(self.in_dim - m)])
        self._svd = SVD(s, self._v_adjoint, self._v, lambda y: _pad(_flat(y), self.in_dim),
                        lambda c: c[:, :m].reshape(-1, *self.out_shape))

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *in_shape) -> (B, *out_shape, n)``: the pixels of each block last."""
        b, f, low = x.shape[0], self.factor, self.out_shape[self.lead:]
        x = x.reshape(b, *self.in_shape[:self.lead], *(d for s in low for d in (s, f)))
        first = 1 + self.lead
        perm = [*range(first), *(first + 2 * i for i in range(self.k)), *(first + 2 * i + 1 for i in range(self.k))]
        return x.permute(perm).reshape(b, *self.out_shape, self.n)

    def _unblocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_blocks`."""
        b, f, low = blocks.shape[0], self.factor, self.out_shape[self.lead:]
        x = blocks.reshape(b, *self.out_shape, *([f] * self.k))
        first = 1 + self.lead
        perm = [*range(first)] + [d for i in range(self.k) for d in (first + i, first + self.k + i)]
        return x.permute(perm).reshape(b, *self.in_shape[:self.lead], *(s * f for s in low))

    def _v_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        coords = self._blocks(x) @ self._buffer("q", x).T  # (B, *out_shape, n): Q x_block per block
        return _flat(coords.movedim(-1, 1))

    def _v(self, c: torch.Tensor) -> torch.Tensor:
        coords = c.reshape(c.shape[0], self.n, *self.out_shape).movedim(1, -1)
        return self._unblocks(coords @ self._buffer("q", c))

    def forward(self, x):
        return self._blocks(x).mean(-1)

    def adjoint(self, y):
        return self._unblocks((y / self.n)[..., None].expand(*y.shape, self.n))

    @property
    def svd(self) -> SVD:
        return self._svd


def _negate_index(c: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``c[-p mod N]`` over ``dims`` (the frequency ``-p`` of a full FFT)."""
    return torch.roll(torch.flip(c, dims), shifts=(1,) * len(dims), dims=dims)


class Blur(LinearOperator):
    """Deblurring: circular convolution of every channel with a known ``kernel`` (centred at ``(k - 1) // 2``).

    Diagonal in the Fourier basis with eigenvalues ``K = FFT(kernel)``. Real SVD: ``V^T`` is the real orthonormal
    Fourier transform (``Re X`` at self-conjugate frequencies, ``sqrt(2) Re X_p`` and ``-sqrt(2) Im X_p`` at the two
    members ``p``, ``-p`` of every other pair, ``X`` the unitary FFT), ``s = |K|`` and ``U`` the same transform
    after the phases ``K / |K|``. Frequencies with ``|K| <= rcond * max |K|`` are cut (``K = 0`` there, also in
    ``forward``) so that the SVD is exact and a noiseless inverse stays finite.

    Args:
        kernel: ``(k_1, ..., k_m)`` real kernel, blurring the last ``m`` dims of ``in_shape``, ``k_i <= n_i``.
        in_shape: event shape, e.g. ``(C, H, W)`` with a 2-D kernel.
        rcond: relative cut-off of the spectrum, ``>= 0``.
    """

    def __init__(self, kernel: torch.Tensor, in_shape: tuple[int, ...], rcond: float = 1e-5):
        in_shape = check_event_shape("in_shape", in_shape)
        kernel = torch.as_tensor(kernel, dtype=torch.float64)
        m = kernel.ndim
        if m < 1 or m > len(in_shape) or any(k > n for k, n in zip(kernel.shape, in_shape[-m:])):
            raise ValueError(f"kernel of shape {tuple(kernel.shape)} must have at most len(in_shape) dims, each no "
                             f"larger than the blurred dims of in_shape {in_shape}")
        if not torch.isfinite(kernel).all():
            raise ValueError("kernel has NaN or inf values")
        if not kernel.any():
            raise ValueError("kernel is all zeros, so the blur observes nothing; give a kernel with nonzero taps "
                             "(e.g. gaussian_kernel(1.0, 5))")
        if isinstance(rcond, bool) or not isinstance(rcond, numbers.Real) or not 0 <= rcond < 1:
            raise ValueError(f"rcond must be a number in [0, 1), got {rcond!r}")
        super().__init__(in_shape, in_shape)
        self.kernel, self.dims = kernel, tuple(range(-m, 0))
        spatial = in_shape[-m:]
        padded = torch.zeros(spatial, dtype=torch.float64)
        padded[tuple(slice(0, k) for k in kernel.shape)] = kernel
        spectrum = torch.fft.fftn(torch.roll(padded, [-((k - 1) // 2) for k in kernel.shape], list(self.dims)),
                                  dim=self.dims)
        keep = spectrum.abs() > rcond * spectrum.abs().max()
        self.spectrum = torch.where(keep, spectrum, 0)
        self.phase = torch.where(keep, spectrum / torch.where(keep, spectrum.abs(), 1), 1)
        idx = torch.arange(math.prod(spatial)).reshape(spatial)
        neg = _negate_index(idx, self.dims)
        self.selfconj, self.positive = idx == neg, idx < neg  # frequencies p = -p, and one member of each pair
        s = self.spectrum.abs().expand(in_shape).reshape(-1)
        self._svd = SVD(s, lambda x: self._to_real(self._fft(x)), lambda c: self._ifft(self._from_real(c)),
                        lambda y: self._to_real(self._fft(y) * self._buffer("phase", y).conj()),
                        lambda c: self._ifft(self._from_real(c) * self._buffer("phase", c)))

    def _fft(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fftn(x, dim=self.dims, norm="ortho")

    def _ifft(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifftn(spec, dim=self.dims, norm="ortho").real

    def _to_real(self, spec: torch.Tensor) -> torch.Tensor:
        """Unitary FFT ``(B, *in_shape)`` (Hermitian) -> its real orthonormal coordinates, flat ``(B, D)``."""
        selfconj, positive = self._buffer("selfconj", spec), self._buffer("positive", spec)
        pair = torch.where(positive, spec.real, -spec.imag) * math.sqrt(2)
        return _flat(torch.where(selfconj, spec.real, pair))

    def _from_real(self, c: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_to_real`: flat real coordinates -> the Hermitian spectrum ``(B, *in_shape)``."""
        c = c.reshape(c.shape[0], *self.in_shape)
        selfconj, positive = self._buffer("selfconj", c), self._buffer("positive", c)
        cn = _negate_index(c, self.dims)  # c[-p]
        pos, neg = torch.complex(c, cn) / math.sqrt(2), torch.complex(cn, -c) / math.sqrt(2)
        return torch.where(selfconj, torch.complex(c, torch.zeros_like(c)), torch.where(positive, pos, neg))

    def forward(self, x):
        return self._ifft(self._fft(x) * self._buffer("spectrum", x))

    def adjoint(self, y):
        return self._ifft(self._fft(y) * self._buffer("spectrum", y).conj())

    @property
    def svd(self) -> SVD:
        return self._svd


class Matrix(LinearOperator):
    """Any dense ``(d_y, d_x)`` matrix: ``y = M x_flat`` (random projections, compressed sensing).

    SVD by ``torch.linalg.svd`` once (float64): singular values ``<= rcond * max(s)`` count as 0 (numpy's
    ``matrix_rank`` tolerance by default).

    Args:
        matrix: ``(d_y, d_x)``.
        in_shape: event shape of ``x`` with ``prod(in_shape) == d_x``; defaults to ``(d_x,)``.
        rcond: relative cut-off of the singular values; default ``max(d_y, d_x) * eps(float64)``.
    """

    def __init__(self, matrix: torch.Tensor, in_shape: tuple[int, ...] | None = None, rcond: float | None = None):
        matrix = torch.as_tensor(matrix, dtype=torch.float64)
        if matrix.ndim != 2 or not torch.isfinite(matrix).all():
            raise ValueError(f"matrix must be a finite (d_y, d_x) matrix, got shape {tuple(matrix.shape)}")
        d_y, d_x = matrix.shape
        in_shape = check_event_shape("in_shape", (d_x,) if in_shape is None else in_shape)
        if math.prod(in_shape) != d_x:
            raise ValueError(f"in_shape {in_shape} has {math.prod(in_shape)} entries but matrix has d_x = {d_x} "
                             f"columns")
        super().__init__(in_shape, (d_y,))
        self.m = matrix
        u, s, vh = torch.linalg.svd(matrix, full_matrices=True)
        rcond = max(d_y, d_x) * torch.finfo(torch.float64).eps if rcond is None else rcond
        r = min(d_y, d_x)
        s = torch.where(s > rcond * s.max().clamp_min(torch.finfo(torch.float64).tiny), s, 0)
        self.u, self.vh = u[:, :r], vh
        self._svd = SVD(_pad(s[None], d_x)[0], lambda x: _flat(x) @ self._buffer("vh", x).T,
                        lambda c: (c @ self._buffer("vh", c)).reshape(-1, *in_shape),
                        lambda y: _pad(y @ self._buffer("u", y), d_x), lambda c: c[:, :r] @ self._buffer("u", c).T)

    def forward(self, x):
        return _flat(x) @ self._buffer("m", x).T

    def adjoint(self, y):
        return (y @ self._buffer("m", y)).reshape(-1, *self.in_shape)

    @property
    def svd(self) -> SVD:
        return self._svd
