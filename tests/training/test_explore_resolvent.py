"""The resolvent ridge denoiser of bench/explore_resolvent_denoiser.py does what its docstring
states: firmly non-expansive for any weights and strength, and its implicit gradient is the
gradient of the computed resolvent."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_loader import load_bench_script  # noqa: E402

explore = load_bench_script("explore_resolvent_denoiser")


def _model(lam):
    torch.manual_seed(0)
    return explore.RidgeResolvent(channels=4, mid=3, lam=lam).double()


def test_the_resolvent_is_firmly_non_expansive_even_at_a_large_strength():
    for lam in (0.5, 50.0):
        model = _model(lam)
        for seed in range(4):
            g = torch.Generator().manual_seed(seed)
            a, b = (torch.rand(1, 1, 12, 12, generator=g, dtype=torch.float64) for _ in range(2))
            with torch.no_grad():
                ra, rb = model(a, 1e-12), model(b, 1e-12)
            # ||Ra - Rb||^2 <= <Ra - Rb, a - b>
            assert float(((ra - rb) ** 2).sum()) <= float(((ra - rb) * (a - b)).sum()) + 1e-10


def test_the_implicit_gradient_matches_finite_differences():
    model = _model(20.0)
    z = torch.rand(1, 1, 10, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64,
                   requires_grad=True)

    def loss(t):
        out = model(t, 1e-13)
        return 0.5 * (out ** 2).sum() + out.sum()

    loss(z).backward()
    direction = torch.randn(z.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    eps = 1e-6
    with torch.no_grad():
        numeric = (loss(z + eps * direction) - loss(z - eps * direction)) / (2 * eps)
        grad_lam = model.log_lam.grad.clone()
        model.log_lam += eps
        up = loss(z)
        model.log_lam -= 2 * eps
        down = loss(z)
        model.log_lam += eps
    assert abs(float((z.grad * direction).sum()) - float(numeric)) <= 1e-4 * abs(float(numeric))
    assert abs(float(grad_lam) - float((up - down) / (2 * eps))) <= 1e-4 * abs(float(grad_lam))
