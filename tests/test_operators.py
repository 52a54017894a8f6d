"""The linear operators of inverse problems: adjointness, SVD consistency, shapes, and bad input.

Every tolerance is float error: the identities hold exactly in real arithmetic, and the computations are a few
FFTs / small matrix products in float64 (relative error ~1e-16 per operation), so 1e-12 leaves a wide margin on any
CPU.
"""

import math

import pytest
import torch

from scorekit.conditioning.operators import (
    DECOUPLE,
    Blur,
    Downsample,
    Gray,
    LinearOperator,
    Mask,
    Matrix,
    Observation,
    adjointness_error,
    svd_errors,
)

F64, TOL = torch.float64, 1e-12

pytestmark = pytest.mark.usefixtures("single_thread")


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def operators():
    """(id, operator) pairs: every built-in on image, odd-sized, flat and higher-dimensional event shapes."""
    g = _g(0)
    return [
        ("mask-image", Mask(torch.rand(3, 4, 4, generator=g) < 0.5)),
        ("mask-broadcast", Mask(torch.tensor([[1, 0, 1]]), (2, 3))),
        ("mask-per-sample", Mask(torch.rand(2, 1, 4, 4, generator=g) < 0.5, (3, 4, 4))),
        ("mask-flat", Mask(torch.rand(7, generator=g) < 0.5)),
        ("gray-image", Gray((3, 4, 4))),
        ("gray-1d", Gray((3, 5))),
        ("down-image", Downsample((3, 4, 4), 2)),
        ("down-flat", Downsample((8,), 2)),
        ("down-3d", Downsample((2, 6, 3, 6), 3)),
        ("down-identity", Downsample((1, 3, 3), 1)),
        ("blur-image", Blur(torch.rand(3, 3, generator=g), (3, 6, 5))),
        ("blur-even-kernel", Blur(torch.ones(2, 2), (2, 4, 4))),  # exact zeros in the spectrum
        ("blur-flat", Blur(torch.rand(4, generator=g), (7,))),
        ("matrix-wide", Matrix(torch.randn(5, 12, generator=g, dtype=F64), (3, 2, 2))),
        ("matrix-tall", Matrix(torch.randn(12, 5, generator=g, dtype=F64))),
        ("matrix-rank-deficient", Matrix(torch.randn(6, 2, generator=g, dtype=F64) @ torch.randn(2, 8, generator=g,
                                                                                               dtype=F64))),
    ]


OPS = operators()
IDS = [name for name, _ in OPS]


@pytest.mark.parametrize("op", [op for _, op in OPS], ids=IDS)
@pytest.mark.parametrize("batch", [1, 3])
def test_adjoint_is_the_transpose(op, batch):
    assert adjointness_error(op, batch_size=batch, generator=_g(1)) < TOL


@pytest.mark.parametrize("op", [op for _, op in OPS], ids=IDS)
@pytest.mark.parametrize("batch", [1, 4])
def test_svd_identities(op, batch):
    errors = svd_errors(op, batch_size=batch, generator=_g(2))
    assert errors["shapes"] == 0
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("op", [op for _, op in OPS if op.batch_size is None], ids=[n for n, op in OPS
                                                                                    if op.batch_size is None])
def test_dense_matrix_singular_values_and_pseudo_inverse(op):
    """The SVD's ``s`` are the dense matrix's singular values; ``A A^+ A = A`` and ``A^+`` is the Moore-Penrose one."""
    a = op.matrix()
    assert a.shape == (op.out_dim, op.in_dim)
    dense_s = torch.linalg.svdvals(a)
    s = op.svd.s.sort(descending=True).values[:len(dense_s)]
    torch.testing.assert_close(s, torch.where(dense_s > 1e-10, dense_s, 0), rtol=0, atol=1e-12)
    y = torch.randn(3, *op.out_shape, generator=_g(3), dtype=F64)
    pinv = torch.linalg.pinv(a, rtol=1e-10)
    torch.testing.assert_close(op.pseudo_inverse(y).reshape(3, -1), y.reshape(3, -1) @ pinv.T, rtol=0, atol=1e-12)


@pytest.mark.parametrize("op", [op for _, op in OPS], ids=IDS)
def test_float32_inputs_stay_float32(op):
    x = torch.randn(op.batch_size or 2, *op.in_shape)
    svd = op.svd
    for out in (op.forward(x), svd.V_adjoint(x), svd.V(svd.V_adjoint(x)), svd.U(svd.V_adjoint(x))):
        assert out.dtype == torch.float32
    torch.testing.assert_close(svd.V(svd.V_adjoint(x)), x, rtol=1e-5, atol=1e-5)


def test_gray_is_the_channel_mean_in_the_decouple_basis():
    op, x = Gray((3, 2, 2)), torch.randn(5, 3, 2, 2, dtype=F64)
    torch.testing.assert_close(op.forward(x), x.mean(1, keepdim=True), rtol=0, atol=1e-15)
    c = op.svd.V_adjoint(x).reshape(5, 3, 4)
    torch.testing.assert_close(c, torch.einsum("ij,bjp->bip", DECOUPLE, x.reshape(5, 3, 4)), rtol=0, atol=1e-15)
    torch.testing.assert_close(op.svd.s[:4], torch.full((4,), 1 / math.sqrt(3), dtype=F64))


def test_downsample_and_blur_compute_what_they_say():
    x = torch.randn(2, 3, 4, 6, dtype=F64, generator=_g(4))
    pooled = torch.nn.functional.avg_pool2d(x, 2)
    torch.testing.assert_close(Downsample((3, 4, 6), 2).forward(x), pooled, rtol=0, atol=1e-15)
    kernel = torch.rand(3, 3, dtype=F64, generator=_g(5))
    # circular convolution centred at (1, 1): y[p] = sum_q k[q] x[p - q + 1]
    want = sum(kernel[i, j] * torch.roll(x, (i - 1, j - 1), (-2, -1)) for i in range(3) for j in range(3))
    torch.testing.assert_close(Blur(kernel, (3, 4, 6), rcond=0).forward(x), want, rtol=0, atol=1e-13)


def test_composition_forward_and_adjoint():
    op = Downsample((3, 4, 4), 2) @ Blur(torch.rand(3, 3, generator=_g(6)), (3, 4, 4))
    assert op.in_shape == (3, 4, 4) and op.out_shape == (3, 2, 2) and op.svd is None
    assert adjointness_error(op, generator=_g(7)) < TOL
    with pytest.raises(ValueError, match="pseudo_inverse needs an operator with an SVD"):
        op.pseudo_inverse(torch.zeros(1, 3, 2, 2))


# --- bad input ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, match", [
    (lambda: Mask(torch.full((2, 2), 0.5)), ValueError, "mask must be binary"),
    (lambda: Mask(torch.ones(3, 3), (2, 2)), ValueError, "does not broadcast to in_shape"),
    (lambda: Gray((4, 2, 2)), ValueError, "3 channels"),
    (lambda: Downsample((3, 5, 4), 2), ValueError, "divisible by factor"),
    (lambda: Downsample((3, 4, 4), 0), ValueError, "factor must be an integer"),
    (lambda: Blur(torch.ones(5, 5), (3, 4, 4)), ValueError, "kernel of shape"),
    (lambda: Blur(torch.zeros(3, 3), (3, 4, 4)), ValueError, "kernel is all zeros"),
    (lambda: Matrix(torch.ones(2, 6), (2, 2)), ValueError, "in_shape"),
    (lambda: Matrix(torch.ones(2, 3, 4)), ValueError, "matrix must be"),
    (lambda: Observation(Gray((3, 2, 2)), torch.zeros(1, 3, 2, 2)), ValueError, "y has shape"),
    (lambda: Observation(Gray((3, 2, 2)), torch.zeros(1, 1, 2, 2), sigma_y=-0.1), ValueError, "sigma_y must be"),
    (lambda: Observation(Gray((3, 2, 2)), torch.zeros(1, 1, 2, 2), sigma_y=float("nan")), ValueError, "sigma_y"),
    (lambda: Observation(Gray((3, 2, 2)), torch.full((1, 1, 2, 2), float("nan"))), ValueError, "NaN"),
    (lambda: Observation(torch.ones(2, 2), torch.zeros(1, 2)), TypeError, "operator must be"),
    (lambda: Observation(Mask(torch.ones(3, 2, dtype=torch.bool), (2,)), torch.zeros(2, 2)), ValueError,
     "per-sample"),
])
def test_bad_input_names_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_observation_checks_the_samples_shape():
    obs = Observation(Downsample((3, 4, 4), 2), torch.zeros(2, 3, 2, 2), sigma_y=0.1)
    obs.check_samples((2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"operator.in_shape = \(3, 4, 4\)"):
        obs.check_samples((2, 3, 8, 8))
    with pytest.raises(ValueError, match="y has batch 2"):
        obs.check_samples((3, 3, 4, 4))
    assert Observation(Gray((3, 2, 2)), torch.zeros(1, 2, 2)).y.shape == (1, 1, 2, 2)  # unbatched y: B = 1


def test_operator_without_svd_is_refused_by_name():
    class Plain(LinearOperator):
        def forward(self, x):
            return 2 * x

        adjoint = forward

    with pytest.raises(ValueError, match="myMethod needs an operator with an SVD, but Plain has none"):
        Plain((3,), (3,)).require_svd("myMethod")
