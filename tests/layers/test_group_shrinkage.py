"""Group shrinkage: the function class (a symmetric Jacobian with eigenvalues in [leak, 1]), and
the certificate of blocks and denoisers that use it, against random pairs and adversarial search,
with negative controls showing that the same search catches a shrinkage that leaves the class."""

import pytest
import torch

from pnp_stable.denoisers import DenoiserConfig, build_denoiser
from pnp_stable.denoisers.models import FreeResidualBlock
from pnp_stable.layers import GroupShrinkage, make_activation
from pnp_stable.training.grow import prune_denoiser, widen_denoiser
from pnp_stable.verification import empirical_lipschitz

from activation_blocks import assert_block_keeps_its_certificate, block_with_activation, saved_and_loaded, single_admissible_step
from certificate_search import TOL, assert_denoiser_keeps_its_certificate

SEARCH = dict(restarts=1, steps=25, n_pairs=8)


def random_shrinkage(channels=6, group_size=2, leak=0.05, seed=0):
    shrink = GroupShrinkage(channels, group_size, leak=leak).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # some thresholds below 0: the forward clamp must still hold
        shrink.raw_thresholds.copy_(torch.empty(channels // group_size, dtype=torch.float64).uniform_(-0.2, 0.8, generator=g))
    return shrink


def test_one_channel_groups_are_leaky_soft_thresholding():
    shrink = GroupShrinkage(3, 1, leak=0.1).double()
    with torch.no_grad():
        shrink.raw_thresholds.copy_(torch.tensor([0.0, 0.5, 2.0]))
    u = torch.linspace(-4, 4, 801, dtype=torch.float64).repeat(2, 3, 1)
    lam = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64).view(1, 3, 1)
    expected = torch.sign(u) * torch.maximum(0.1 * u.abs(), u.abs() - lam)
    torch.testing.assert_close(shrink(u), expected, rtol=0, atol=1e-12)
    assert make_activation(shrink) is shrink  # accepted as monotone and 1-Lipschitz


@pytest.mark.parametrize("group_size", [2, 3])
def test_jacobian_is_symmetric_with_eigenvalues_in_leak_to_one(group_size):
    """The class a certified block needs: the gradient of a convex function (symmetric Jacobian,
    eigenvalues >= 0) that is 1-Lipschitz (eigenvalues <= 1), checked at points inside, near and
    beyond the threshold and at 0."""
    shrink = random_shrinkage(channels=2 * group_size, group_size=group_size, seed=1)
    lam = shrink.thresholds().repeat_interleave(group_size)
    g = torch.Generator().manual_seed(2)
    points = [torch.zeros(2 * group_size, dtype=torch.float64)]
    for radius in (0.05, 0.3, 0.6, 0.9, 3.0):
        direction = torch.randn(2 * group_size, generator=g, dtype=torch.float64)
        points.append(radius * direction / direction.norm() * (1 + lam))
    for u in points:
        jac = torch.autograd.functional.jacobian(lambda v: shrink(v.view(1, -1)).view(-1), u)
        torch.testing.assert_close(jac, jac.T, rtol=0, atol=1e-12)
        eig = torch.linalg.eigvalsh(jac)
        assert float(eig.min()) >= shrink.leak - 1e-9 and float(eig.max()) <= 1 + 1e-9
    # and across groups nothing couples
    jac = torch.autograd.functional.jacobian(lambda v: shrink(v.view(1, -1)).view(-1), points[-1])
    assert float(jac[:group_size, group_size:].abs().max()) == 0.0


def test_random_pairs_and_adversarial_search_find_no_expansion_or_decrease():
    shrink = random_shrinkage(channels=8, group_size=4, seed=3)
    lip = empirical_lipschitz(shrink, (8, 3, 3), **SEARCH)
    assert 0.9 < lip <= 1 + TOL
    g = torch.Generator().manual_seed(4)
    u, v = (torch.randn(64, 8, 3, 3, generator=g, dtype=torch.float64) * 0.7 for _ in range(2))
    with torch.no_grad():
        monotone = ((shrink(u) - shrink(v)) * (u - v)).flatten(1).sum(dim=1)
    assert float(monotone.min()) >= -TOL


def test_gradients_match_finite_differences():
    shrink = GroupShrinkage(4, 2, leak=0.1).double()
    with torch.no_grad():
        shrink.raw_thresholds.copy_(torch.tensor([0.3, 0.7]))
    u = (torch.randn(2, 4, 3, 3, dtype=torch.float64) * 0.8 + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(shrink, (u,))
    raw = shrink.raw_thresholds.detach().clone().requires_grad_()
    call = lambda w: torch.func.functional_call(shrink, {"raw_thresholds": w}, (u.detach(),))  # noqa: E731
    assert torch.autograd.gradcheck(call, (raw,))
    with torch.no_grad():
        shrink.raw_thresholds.fill_(-1.0)
    shrink.project_parameters_()
    assert float(shrink.raw_thresholds.detach().min()) == 0.0


def test_block_with_group_shrinkage_keeps_its_certificate():
    assert_block_keeps_its_certificate(block_with_activation(random_shrinkage(seed=5)), [(2, 7, 6)], SEARCH)


class _Rotated(GroupShrinkage):
    """Shrink, then rotate each pair by 90 degrees: still 1-Lipschitz, but no gradient of a convex
    function (an antisymmetric Jacobian), so the block is no gradient step."""

    def forward(self, u):
        s = super().forward(u)
        pairs = s.reshape(s.shape[0], -1, 2, *s.shape[2:])
        return torch.stack([-pairs[:, :, 1], pairs[:, :, 0]], dim=2).reshape(s.shape)


class _Amplified(GroupShrinkage):
    """Keep 3x each group beyond the threshold: a gradient, but 3x steeper than the step rule assumes."""

    def forward(self, u):
        return 3.0 * super().forward(u)


@pytest.mark.parametrize("broken", [_Rotated, _Amplified])
def test_search_catches_a_shrinkage_that_leaves_the_class(broken):
    shrink = broken(4, 2, leak=1.0).double()  # leak 1, threshold 0: a linear s, the worst case for both
    with torch.no_grad():
        shrink.raw_thresholds.zero_()
    block = single_admissible_step(block_with_activation(shrink, scale=1.0))
    honest = single_admissible_step(block_with_activation(GroupShrinkage(4, 2, leak=1.0).double(), scale=1.0))
    assert empirical_lipschitz(honest, (2, 6, 6), restarts=1, steps=60) <= 1 + TOL
    assert empirical_lipschitz(block, (2, 6, 6), restarts=1, steps=60) > 1.05


def tiny_grouped(**kw):
    cfg = dict(width=3, hidden=6, blocks=3, embedding_dim=8, power_size=8, init_scale=1.6, shrinkage_group_size=2,
               time_conditioning=True, input_injection=True)
    cfg.update(kw)
    torch.manual_seed(7)
    model = build_denoiser(DenoiserConfig(**cfg))
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for p in model.embedding.parameters():
            p.normal_(0, 0.5, generator=g)
        for block in model.network[1:-1]:
            block.activation.raw_thresholds.uniform_(0.0, 0.4, generator=g)
    return model.double().eval()


def test_denoiser_with_group_shrinkage_keeps_its_certificate_for_every_sigma():
    model = tiny_grouped()
    assert all(isinstance(b.activation, GroupShrinkage) for b in model.flow_blocks)
    model.freeze_substeps()
    assert_denoiser_keeps_its_certificate(model, SEARCH)


def test_unconstrained_twin_uses_the_same_activation():
    twin = tiny_grouped(kind="unconstrained", time_conditioning=False)
    blocks = [b for b in twin.network if isinstance(b, FreeResidualBlock)]
    assert len(blocks) == 3 and all(isinstance(b.activation, GroupShrinkage) for b in blocks)


def test_configuration_refuses_what_would_break_the_groups():
    with pytest.raises(ValueError, match="divide hidden"):
        DenoiserConfig(hidden=6, shrinkage_group_size=4)
    with pytest.raises(ValueError, match="not both"):
        DenoiserConfig(hidden=6, shrinkage_group_size=2, spline_knots=3)
    with pytest.raises(ValueError, match="channel_gating"):
        DenoiserConfig(hidden=6, shrinkage_group_size=2, channel_gating=True)
    with pytest.raises(ValueError, match="cannot be split"):
        GroupShrinkage(5, 2)


def test_saves_loads_and_reshapes_with_its_thresholds(tmp_path):
    model = tiny_grouped()
    again = saved_and_loaded(model, tmp_path / "grouped.pt")
    assert again.certificate().averagedness == model.certificate().averagedness
    # pruning moves each block's thresholds with it; widening keeps the old ones in place
    pruned = prune_denoiser(model, [1])
    torch.testing.assert_close(pruned.flow_blocks[1].activation.raw_thresholds,
                               model.flow_blocks[2].activation.raw_thresholds, rtol=0, atol=0, check_dtype=False)
    wide = widen_denoiser(model, hidden=8)
    assert wide.flow_blocks[0].activation.raw_thresholds.shape == (4,)
    torch.testing.assert_close(wide.flow_blocks[0].activation.raw_thresholds[:3],
                               model.flow_blocks[0].activation.raw_thresholds, rtol=0, atol=0, check_dtype=False)


def test_a_channel_gate_that_splits_a_group_is_refused():
    """A gate (1, 0) on a group of two made the field non-symmetric: the block measured Lipschitz
    1.038 (adversarial search, 1x1 images) against a certified 1. A gate constant on every group
    keeps it a gradient of a convex potential, and the certificate."""
    from pnp_stable.denoisers.models import TimeScaledFlowBlock
    from pnp_stable.layers import ConvMap

    torch.manual_seed(0)
    blk = TimeScaledFlowBlock(ConvMap(2, 4, 1), activation=GroupShrinkage(4, 2, leak=0.0, initial_threshold=0.5),
                              time=0.5).double().eval()
    with torch.no_grad():
        blk.bias.zero_()
    split = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64).view(1, 4, 1, 1)
    with pytest.raises(ValueError, match="constant on each group"):
        blk(torch.zeros(1, 2, 3, 3, dtype=torch.float64), channel_gate=split)
    whole = torch.tensor([0.3, 0.3, 1.0, 1.0], dtype=torch.float64).view(1, 4, 1, 1)
    T = lambda x: blk(x, channel_gate=whole.expand(x.shape[0], 4, 1, 1))  # noqa: E731
    assert empirical_lipschitz(T, (2, 1, 1), restarts=2, steps=40, n_pairs=16) <= blk.certificate().lipschitz + TOL
