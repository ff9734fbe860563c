"""Our operators behave as deepinv LinearPhysics: the generic checks deepinv runs on its own
physics (autograd adjoint, differentiable adjoint, pseudo-inverse, composition, clone,
state_dict, forward with a noise model), plus the lazy package namespace."""

import subprocess
import sys

import pytest
import torch

from pnp_stable.operators import Blur, Downsample, Identity, Inpainting, ParallelBeamCT


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PNP_STABLE_CACHE", str(tmp_path / "cache"))


BUILDERS = {
    "blur-circular": lambda: Blur("gauss:1.0", (1, 12, 12)),
    "blur-reflect": lambda: Blur("motion:5,30", (1, 12, 12), boundary="reflect"),
    "blur-valid": lambda: Blur("box:3", (1, 12, 12), boundary="valid"),
    "ct": lambda: ParallelBeamCT(12, angles=6),
    "inpainting": lambda: Inpainting.random((1, 12, 12), 0.5, seed=0),
    "downsample": lambda: Downsample(2, "gauss:1.0", (1, 12, 12)),
    "identity": lambda: Identity((1, 12, 12)),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_adjoint_matches_deepinv_autograd_adjoint(name):
    from deepinv.physics import adjoint_function

    op = BUILDERS[name]()
    x = torch.randn(2, 1, 12, 12)
    y = op.A(x)
    reference = adjoint_function(op.A, x.shape, x.device, x.dtype)(y)
    torch.testing.assert_close(op.A_adjoint(y), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_adjoint_is_differentiable_with_gradient_a(name):
    op = BUILDERS[name]()
    x = torch.randn(1, 1, 12, 12)
    y = op.A(x).detach().requires_grad_()
    z = torch.randn_like(x)
    (z * op.A_adjoint(y)).sum().backward()
    torch.testing.assert_close(y.grad, op.A(z), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["inpainting", "ct", "downsample"])
def test_deepinv_pseudo_inverse_runs_on_ours(name):
    op = BUILDERS[name]()
    x = torch.randn(1, 1, 12, 12, dtype=torch.float64)
    r = op.A_adjoint(op.A(x))  # a point in the range of A^T, recoverable exactly
    estimate = op.A_dagger(op.A(r), solver="lsqr", tol=1e-8, max_iter=200)
    assert float((estimate - r).norm() / r.norm()) < 1e-3


def test_composition_clone_state_dict_and_forward():
    from deepinv.physics import GaussianNoise

    blur = BUILDERS["blur-reflect"]()
    mask = BUILDERS["inpainting"]()
    composed = mask * blur  # deepinv: apply blur, then mask
    x = torch.randn(1, 1, 12, 12)
    assert float(composed.adjointness_test(u=x)) < 1e-5
    torch.testing.assert_close(composed.A(x), mask.A(blur.A(x)))

    clone = blur.clone()
    torch.testing.assert_close(clone.A(x), blur.A(x))
    assert clone.norm() == blur.norm()

    fresh = Inpainting(torch.ones(12, 12))
    assert fresh.norm() == 1.0
    scaled = Inpainting(0.5 * mask.mask[0, 0])
    fresh.load_state_dict(scaled.state_dict())
    for dtype in (torch.float32, torch.float64):
        torch.testing.assert_close(fresh.A(x.to(dtype)), scaled.A(x.to(dtype)))
    assert fresh.norm() == scaled.norm() == 0.5  # derived quantities follow the loaded buffer

    blur.noise_model = GaussianNoise(sigma=0.0)
    torch.testing.assert_close(blur(x), blur.A(x))


def test_lazy_namespace():
    import pnp_stable.operators as ops

    with pytest.raises(AttributeError):
        ops.NotAnOperator  # noqa: B018
    assert {"Blur", "ParallelBeamCT", "kernels"} <= set(dir(ops))
    code = (
        "import sys, pnp_stable.operators; from pnp_stable.operators import kernels; "
        "sys.exit(1 if 'deepinv' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
