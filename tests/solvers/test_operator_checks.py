"""What the solvers check of a user's operator and denoiser before trusting them (review of
2026-12-06): adjoints at every image size, claimed norms, a protocol operator's prox, vector
measurements, per-image deepinv parameters, certificates given in the wrong form, NaN outputs."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from pnp_stable.layers.certificates import Certificate, certificate_of
from pnp_stable.solvers import as_operator, solve
from solver_toys import FFTBlur, gaussian_kernel


class Smooth(nn.Module):
    """Symmetric with spectrum in [0, 1]: firmly non-expansive, as its certificate says."""

    def forward(self, x):
        return 0.5 * x + 0.5 * sum(torch.roll(x, s, d) for s in (1, -1) for d in (-1, -2)) / 4

    def certificate(self):
        return Certificate(1.0, 0.5)


class Altered(FFTBlur):
    """A protocol blur with one member replaced (a scaled adjoint, a false norm, an inexact prox)."""

    def __init__(self, shape, adjoint_scale=1.0, claimed_norm=None, prox_steps=None):
        super().__init__(gaussian_kernel(5, 1.0), shape)
        self.adjoint_scale, self.claimed_norm, self.prox_steps = adjoint_scale, claimed_norm, prox_steps

    def A_adjoint(self, y):
        return self.adjoint_scale * super().A_adjoint(y)

    def norm(self):
        return super().norm() if self.claimed_norm is None else self.claimed_norm

    def prox_data(self, z, y, gamma):
        if self.prox_steps is None:
            return super().prox_data(z, y, gamma)
        x = z.clone()
        for _ in range(self.prox_steps):  # a few gradient steps: not the argmin
            x = x - 0.1 * (gamma * self.A_adjoint(self.A(x) - y) + x - z)
        return x


class Shift(Altered):
    """A one-pixel shift whose "adjoint" shifts the same way (it should shift back)."""

    def A(self, x):
        return torch.roll(x, 1, -1)

    def A_adjoint(self, y):
        return torch.roll(y, 1, -1)

    def norm(self):
        return 1.0


@pytest.mark.parametrize("size", [32, 512])
def test_a_wrong_adjoint_is_refused_at_every_image_size(size):
    y = torch.rand(1, 1, size, size)
    for wrong in (Altered((size, size), adjoint_scale=1.2), Shift((size, size))):
        with pytest.raises(ValueError, match="is not the adjoint of A"):
            as_operator(wrong, y)
    assert as_operator(Altered((size, size)), y) is not None  # the true adjoint passes


def test_a_norm_below_a_power_method_lower_bound_is_refused():
    y = torch.rand(1, 1, 32, 32)
    with pytest.raises(ValueError, match=r"norm\(\) = 0.5 \(exact\) is not an upper bound"):
        as_operator(Altered((32, 32), claimed_norm=0.5), y)
    for bad in (float("inf"), float("nan"), 0.0):
        with pytest.raises(ValueError, match="must be positive and finite"):
            as_operator(Altered((32, 32), claimed_norm=bad), y)


@pytest.mark.filterwarnings("ignore::pnp_stable.solvers.MonotonicityWarning")  # the bad prox does that
def test_an_inexact_prox_of_a_protocol_operator_is_an_assumption_not_a_proof():
    x = torch.rand(1, 1, 32, 32)
    op = Altered((32, 32), prox_steps=5)
    result = solve(op.A(x), op, Smooth(), method="admm", step=50.0, noise_level=0.01, max_iter=5, progress=False)
    assert result.guarantee.holds and not result.guarantee.proven
    assert any("is not the exact prox" in a for a in result.guarantee.assumptions)
    assert "guaranteed if assumptions hold" in repr(result)
    exact = solve(op.A(x), Altered((32, 32)), Smooth(), method="admm", step=50.0, max_iter=5, progress=False)
    assert exact.guarantee.proven and repr(exact).endswith("guaranteed)")


def test_a_protocol_object_missing_members_is_told_which():
    class Partial:
        norm_kind = "upper"

        def A(self, x):
            return x

        def A_adjoint(self, y):
            return y

        def norm(self):
            return 1.0

    with pytest.raises(ValueError, match=r"missing prox_data, simulate; norm_kind 'upper' is not"):
        as_operator(Partial(), torch.rand(1, 1, 8, 8))


def test_vector_measurements_of_a_deepinv_physics_are_solved():
    dinv = pytest.importorskip("deepinv")
    torch.manual_seed(0)
    cs = dinv.physics.CompressedSensing(m=128, img_size=(1, 16, 16))
    x = torch.rand(1, 1, 16, 16)
    for physics in (cs, dinv.physics.LinearPhysics(A=cs.A, A_adjoint=cs.A_adjoint)):
        result = solve(cs.A(x), physics, Smooth(), method="fb", max_iter=20, progress=False)
        assert result.x.shape == (1, 1, 16, 16) and result.guarantee.holds


def test_a_batch_with_a_mask_per_image_runs_past_the_first_converged_image():
    dinv = pytest.importorskip("deepinv")
    torch.manual_seed(0)
    x = torch.rand(2, 1, 24, 24)
    x[0] = 0.5  # the two converge at different iterations: one runs on alone
    physics = dinv.physics.Inpainting(img_size=(1, 24, 24), mask=(torch.rand(2, 1, 24, 24) > 0.5).float())
    result = solve(physics.A(x), physics, Smooth(), method="fb", max_iter=200, tol=1e-4, progress=False)
    assert result.iterations_per_image[0] != result.iterations_per_image[1]
    assert torch.isfinite(result.x).all()


def test_fb_with_a_merely_non_expansive_denoiser_says_what_is_averaged():
    class Flip(nn.Module):
        def forward(self, x):
            return 1.0 - x

        def certificate(self):
            return Certificate(1.0, None)

    x = torch.rand(1, 1, 16, 16)
    op = FFTBlur(gaussian_kernel(3, 0.8), (16, 16))
    result = solve(op.A(x), op, Flip(), method="fb", max_iter=3, progress=False)
    reason = result.guarantee.reason
    assert "is non-expansive" in reason and "(x + T x)/2 is 0.5-averaged" in reason
    assert "Combettes-Yamada" not in reason


def test_a_denoiser_turning_finite_values_into_nan_leaves_the_last_finite_iterate():
    class Breaks(Smooth):
        calls = 0

        def forward(self, x):
            Breaks.calls += 1
            out = super().forward(x)
            return out * float("nan") if Breaks.calls > 3 else out

    x = torch.rand(1, 1, 16, 16)
    op = FFTBlur(gaussian_kernel(3, 0.8), (16, 16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = solve(op.A(x), op, Breaks(), method="fb", max_iter=20, progress=False, accelerate=None)
    assert result.stopped_by == "non-finite"
    assert torch.isfinite(result.x).all()
    assert any("non-finite values at iteration" in str(w.message) and "last finite iterate" in str(w.message)
               for w in caught)


def test_a_certificate_in_the_wrong_form_is_an_error_and_an_attribute_one_is_read():
    class Attribute(nn.Module):
        certificate = Certificate(1.0, 0.5)

    class Dict(nn.Module):
        def certificate(self):
            return {"lipschitz": 1.0, "averagedness": 0.5}

    assert certificate_of(Attribute()).averagedness == 0.5
    with pytest.raises(TypeError, match=r"Dict.certificate\(\) gave a dict, not a pnp_stable.layers.Certificate"):
        certificate_of(Dict())


def test_a_noise_level_on_the_0_255_scale_is_refused():
    from pnp_stable.denoisers import load

    x = torch.rand(1, 1, 16, 16)
    op = FFTBlur(gaussian_kernel(3, 0.8), (16, 16))
    with pytest.raises(ValueError, match="on the 0-255 scale"):
        solve(op.A(x), op, load("gray"), method="admm", noise_level=25, max_iter=1, progress=False)


def test_a_deepinv_blur_with_a_filter_per_image_is_solved():
    dinv = pytest.importorskip("deepinv")
    torch.manual_seed(0)
    filters = torch.stack([torch.ones(1, 5, 5) / 25, torch.ones(1, 5, 5).tril() / 15])  # 2 x 1 x 5 x 5
    physics = dinv.physics.Blur(filter=filters, padding="circular")
    x = torch.rand(2, 1, 24, 24)
    result = solve(physics.A(x), physics, Smooth(), method="fb", max_iter=30, tol=1e-3, progress=False)
    assert result.x.shape == x.shape and torch.isfinite(result.x).all()


def test_a_bare_image_measurement_is_told_to_add_its_dimensions():
    dinv = pytest.importorskip("deepinv")
    physics = dinv.physics.Downsampling(img_size=(1, 16, 16), factor=2, filter="bicubic", padding="circular")
    y = physics.A(torch.rand(1, 1, 16, 16))[0, 0]  # 8 x 8, without batch and channel
    with pytest.raises(ValueError, match=r"y\[None, None\]"):
        solve(y, physics, Smooth(), method="fb", max_iter=1, progress=False)


def test_a_physics_whose_prox_fails_is_refused_for_admm_and_drs_and_runs_with_fb():
    dinv = pytest.importorskip("deepinv")
    physics = dinv.physics.Downsampling(img_size=(1, 16, 16), factor=2, filter=None)  # its prox_l2 multiplies None
    y = physics.A(torch.rand(1, 1, 16, 16))
    for method in ("admm", "drs"):
        with pytest.raises(ValueError, match=r"prox_l2 of Downsampling fails on a probe \(TypeError.*use method='fb'"):
            solve(y, physics, Smooth(), method=method, step=1.0, max_iter=2, progress=False)
    assert solve(y, physics, Smooth(), method="fb", max_iter=2, progress=False).iterations == 2


def test_norms_of_other_number_types_and_tiny_operators_pass_and_a_nan_adjoint_does_not():
    import numpy as np

    class NumpyNorm(Altered):
        def norm(self):
            return np.float32(FFTBlur.norm(self))

    class Tiny(FFTBlur):  # a correct operator with a norm of 1e-22: A^T A x underflows in float32
        def __init__(self):
            super().__init__(gaussian_kernel(3, 0.8), (16, 16))
            self.symbol = self.symbol * 1e-22

    class NanAdjoint(Altered):
        def A_adjoint(self, y):
            return super().A_adjoint(y) * float("nan")

    y = torch.rand(1, 1, 16, 16)
    assert as_operator(NumpyNorm((16, 16)), y) is not None
    assert as_operator(Tiny(), y * 1e-22) is not None
    with pytest.raises(ValueError, match="is not the adjoint of A"):
        as_operator(NanAdjoint((16, 16)), y)


def test_a_denoiser_returning_nan_at_once_leaves_the_start_point():
    class NanAtOnce(Smooth):
        def forward(self, x):
            return super().forward(x) * float("nan")

    x = torch.rand(1, 1, 16, 16)
    op = FFTBlur(gaussian_kernel(3, 0.8), (16, 16))
    for method in ("fb", "admm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = solve(op.A(x), op, NanAtOnce(), method=method, step=1.0, noise_level=0.01, max_iter=5,
                           progress=False)
        assert result.stopped_by == "non-finite" and torch.isfinite(result.x).all(), method


@pytest.mark.parametrize("method", ["fb", "admm", "drs"])
def test_a_denoiser_turning_nan_mid_run_stops_that_image_cleanly(method):
    """ADMM included: its data prox refuses non-finite input, which must not turn the documented
    stop (last finite iterate, a warning) into an error naming an internal variable."""
    class NanAfterFour(Smooth):
        calls = 0

        def forward(self, x):
            type(self).calls += 1
            out = super().forward(x)
            return out * float("nan") if type(self).calls > 4 else out

    from pnp_stable.operators import Blur

    x = torch.rand(1, 1, 16, 16)
    op = Blur("gauss:0.8", (1, 16, 16))  # its prox checks its input, as the toy operators' do not
    with pytest.warns(RuntimeWarning, match="non-finite values at iteration"):
        result = solve(op.A(x), op, NanAfterFour(), method=method, step=1.0, noise_level=0.01, max_iter=10,
                       tol=1e-12, progress=False)
    assert result.stopped_by == "non-finite" and torch.isfinite(result.x).all() and result.iterations >= 3

