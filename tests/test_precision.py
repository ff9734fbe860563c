"""pnp_stable.precision: TF32 off inside solves and Lipschitz searches, the autocast dtype, and the
precision of what the certificate and the training step counts are computed from."""

import pytest
import torch

from pnp_stable.denoisers import DenoiserConfig, build_denoiser
from pnp_stable.operators import Blur
from pnp_stable.precision import _tf32_settings, cuda_autocast_dtype, ieee_float32
from pnp_stable.solvers import solve
from pnp_stable.verification import empirical_lipschitz


def _current():
    return [getattr(obj, name) for obj, name, _ in _tf32_settings()]


def _ieee():
    return [value for _, _, value in _tf32_settings()]


def _allow_tf32_everywhere():
    """Torch's GPU defaults or a user's: TF32 allowed for convolutions and matrix products."""
    saved = _current()
    for obj, name, ieee in _tf32_settings():
        setattr(obj, name, "tf32" if isinstance(ieee, str) else True)
    return saved


def _restore(saved):
    for (obj, name, _), value in zip(_tf32_settings(), saved):
        setattr(obj, name, value)


def test_ieee_float32_sets_and_restores_even_on_error():
    saved = _allow_tf32_everywhere()
    try:
        before = _current()
        assert before != _ieee()
        with ieee_float32():
            assert _current() == _ieee()
        assert _current() == before
        with pytest.raises(RuntimeError), ieee_float32():
            raise RuntimeError("boom")
        assert _current() == before
    finally:
        _restore(saved)


def test_solves_and_lipschitz_searches_run_without_tf32():
    seen = []
    saved = _allow_tf32_everywhere()
    try:
        torch.manual_seed(0)
        x = torch.rand(1, 1, 16, 16)
        op = Blur("gauss:1.0", (1, 16, 16))
        model = build_denoiser(DenoiserConfig(width=3, hidden=4, blocks=1, embedding_dim=4)).eval()
        solve(op.A(x), op, model, max_iter=2, callback=lambda info: seen.append(_current()))

        def probe(z):
            seen.append(_current())
            return 0.5 * z

        empirical_lipschitz(probe, (1, 1, 4, 4), restarts=1, steps=2, n_pairs=2)
        assert seen and all(s == _ieee() for s in seen)
        assert _current() != _ieee()  # and the user's settings are back
    finally:
        _restore(saved)


def test_autocast_dtype_ignores_emulated_bfloat16(monkeypatch):
    def emulated_only(including_emulation: bool = True) -> bool:
        return including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", emulated_only)
    assert cuda_autocast_dtype() == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert cuda_autocast_dtype() == torch.bfloat16


def test_power_vector_is_not_quantised_by_autocast():
    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(width=3, hidden=4, blocks=1, embedding_dim=4))
    linear = next(m for m in model.modules() if hasattr(m, "estimate_norm"))
    linear.estimate_norm(n_iter=5)
    start = linear.power_vector.clone()
    plain = linear.estimate_norm(n_iter=3)
    expected = linear.power_vector.clone()
    linear.power_vector.copy_(start)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = linear.estimate_norm(n_iter=3)
    assert under_autocast == plain
    assert torch.equal(linear.power_vector, expected)


def test_noise_level_heads_do_not_underflow_under_float16_autocast():
    # a time logit of -60 (the shipped gray reaches about -60 as sigma -> 0): sigmoid in float16 is 0,
    # which the certified block refuses as a time scale; in float32 it is 8.8e-27 > 0
    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(width=3, hidden=4, blocks=2, embedding_dim=4,
                                          time_conditioning=True)).eval()
    last = model.time_embedding.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-60.0)
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        out = model(x, 0.1)
    assert torch.isfinite(out).all()


def test_ieee_float32_leaves_an_enclosing_autocast():
    """A solve inside the caller's bfloat16 autocast ran its denoiser in bfloat16 while the monitor's
    tolerance is float32's: 7 'increases' a certified map cannot have (review of 2026-12-06)."""
    conv = torch.nn.Conv2d(1, 1, 3)
    x = torch.rand(1, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16
        with ieee_float32():
            assert conv(x).dtype == torch.float32
        assert conv(x).dtype == torch.bfloat16
