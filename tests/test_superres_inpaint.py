"""Super-resolution and inpainting tasks (pnp_stable.super_resolve, pnp_stable.inpaint): results,
guarantees, the sampling-aligned interpolation, the masked noise estimate and the fill, refusals."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

import pnp_stable as ps
from pnp_stable.observations import QUANTISATION_NOISE_LEVEL, fill_missing, interpolate_samples
from pnp_stable.restore import psnr
from pnp_stable.solvers import estimate_noise_level


@pytest.fixture(scope="module")
def camera64():
    return torch.from_numpy(data.camera()[200:264, 220:284] / 255.0).float()[None]


@pytest.fixture(scope="module")
def gray():
    from pnp_stable.denoisers import load

    return load("gray")


# -- super-resolution ----------------------------------------------------------------------------

def test_super_resolution_beats_bicubic_with_a_proven_guarantee(camera64, gray):
    r = ps.super_resolve(camera64, 2, simulate=True, noise_level=0.01, denoiser=gray, progress=False)
    assert r.image.shape == (1, 64, 64) and r.observation.shape == (1, 32, 32)
    m = r.report["metrics"]
    assert m["input"] == "bicubic" and m["psnr"] > m["psnr_input"] + 1.0
    assert r.guarantee.holds and r.guarantee.proven and r.result.monotone and r.result.converged
    assert r.report["operator"]["norm_kind"] == "exact" and r.report["operator"]["kernel"] == "gauss:1"
    assert "(bicubic " in r.summary_line()


def test_super_resolving_a_real_image_multiplies_its_size(camera64, gray):
    small = camera64[:, ::2, ::2]
    r = ps.super_resolve(small, 3, noise_level=0.01, denoiser=gray, max_iter=30, progress=False)
    assert r.image.shape == (1, 96, 96) and r.psnr is None
    assert r.report["operator"]["boundary"] == "reflect" and any("reflect" in n for n in r.notes)
    assert r.guarantee.holds and r.result.monotone
    # the result explains the observation: re-sampled, it is close to the input
    from pnp_stable.operators import Downsample

    op = Downsample(3, "gauss:1.5", (1, 96, 96), boundary="reflect")
    assert psnr(op.A(r.image[None])[0], small) > 30


def test_a_super_resolution_resumes_exactly(camera64, gray, tmp_path):
    common = dict(simulate=True, noise_level=0.02, denoiser=gray, progress=False, accelerate=False)
    full = ps.super_resolve(camera64, 2, max_iter=6, tol=1e-12, **common)
    state = tmp_path / "sr.state"
    ps.super_resolve(camera64, 2, max_iter=3, tol=1e-12, checkpoint=state, **common)
    # max_iter is the total over the calls: the same call with resume=True ends where the uninterrupted one does
    resumed = ps.super_resolve(camera64, 2, max_iter=6, tol=1e-12, checkpoint=state, resume=True, **common)
    assert resumed.result.iterations == 6 and torch.equal(resumed.image, full.image)
    with pytest.raises(ValueError, match="another problem"):
        ps.super_resolve(camera64, 2, max_iter=6, kernel="gauss:2", checkpoint=state, resume=True, **common)


def test_a_nearly_noise_free_super_resolution_converges_monotonically(camera64, gray):
    # at noise 0.002 the rule's gamma is ~325; the prox's float32 rounding used to outgrow the
    # residual (300 iterations without converging, residual increases under a proven guarantee)
    r = ps.super_resolve(camera64, 2, simulate=True, noise_level=0.002, denoiser=gray, max_iter=80, progress=False)
    assert r.result.parameters["step"] > 200
    assert r.result.converged and r.result.monotone and r.result.iterations < 40


@pytest.mark.parametrize("factor, match", [(1, "use deblur"), (2.5, "integer >= 2"), (True, "integer >= 2"),
                                           (0, "integer >= 2")])
def test_bad_factors_are_refused(camera64, factor, match):
    with pytest.raises(ValueError, match=match):
        ps.super_resolve(camera64, factor, simulate=True, progress=False)


def test_a_valid_boundary_needs_a_simulation(camera64):
    with pytest.raises(ValueError, match="boundary 'valid' needs a simulated"):
        ps.super_resolve(camera64, 2, boundary="valid", noise_level=0.01, progress=False)


@pytest.mark.parametrize("factor", [2, 3])
def test_the_interpolation_passes_through_the_samples(factor):
    y = torch.rand(2, 1, 7, 9, dtype=torch.float64)
    fine = interpolate_samples(y, factor, (7 * factor, 9 * factor))
    assert torch.allclose(fine[..., ::factor, ::factor], y, atol=1e-12)
    # a ramp stays an increasing ramp between the samples
    ramp = torch.arange(9, dtype=torch.float64).expand(1, 1, 7, 9).clone()
    got = interpolate_samples(ramp, factor, (7 * factor, 9 * factor))[0, 0, 0]
    assert (got[1: 8 * factor + 1] > got[: 8 * factor]).all()
    # negative control: the centred interpolation of torch misses the samples by a shift
    centred = F.interpolate(y, scale_factor=factor, mode="bicubic", align_corners=False)
    assert not torch.allclose(centred[..., ::factor, ::factor], y, atol=1e-3)


# -- inpainting ----------------------------------------------------------------------------------

def test_inpainting_beats_the_fill_with_a_proven_guarantee(camera64, gray):
    r = ps.inpaint(camera64, simulate=True, observed_fraction=0.5, denoiser=gray, progress=False)
    m = r.report["metrics"]
    assert m["input"] == "fill" and m["psnr"] > m["psnr_input"] + 1.0
    assert r.guarantee.holds and r.guarantee.proven and r.result.monotone and r.result.converged
    assert 0.4 < r.report["operator"]["observed_fraction"] < 0.6
    assert r.report["noise"]["sigma"] == pytest.approx(QUANTISATION_NOISE_LEVEL)
    assert any("no noise" in n for n in r.notes)


def test_the_values_under_the_mask_are_ignored(camera64, gray):
    missing = torch.zeros(64, 64, dtype=torch.bool)
    missing[20:40, 10:50] = True
    damaged = camera64.clone()
    damaged[:, missing] = 1.0
    other = camera64.clone()
    other[:, missing] = 0.0
    a = ps.inpaint(damaged, missing, noise_level=0.01, denoiser=gray, max_iter=20, progress=False)
    b = ps.inpaint(other, missing.numpy(), noise_level=0.01, denoiser=gray, max_iter=20, progress=False)
    assert torch.equal(a.image, b.image)
    # the hole is filled with something like the scene around it, not the white marks
    assert psnr(a.image[:, missing][None, None], camera64[:, missing][None, None]) > \
        psnr(damaged[:, missing][None, None], camera64[:, missing][None, None]) + 5


def test_inpainting_estimates_the_noise_from_fully_observed_blocks(camera64, gray):
    g = torch.Generator().manual_seed(3)
    noisy = (camera64 + 0.03 * torch.randn(camera64.shape, generator=g)).clamp(0, 1)
    missing = torch.rand(64, 64, generator=g) < 0.3
    r = ps.inpaint(noisy, missing, denoiser=gray, max_iter=3, progress=False)
    assert r.report["noise"]["source"] == "estimated"
    assert 0.025 < r.report["noise"]["sigma"] < 0.04


def test_the_masked_noise_estimate_ignores_the_holes():
    g = torch.Generator().manual_seed(0)
    y = 0.5 + 0.02 * torch.randn(1, 1, 128, 128, generator=g, dtype=torch.float64)
    observed = (torch.rand(1, 1, 128, 128, generator=g) > 0.3).double()
    holes = y * observed
    assert estimate_noise_level(holes, observed)[0] == pytest.approx(0.02, rel=0.1)
    # negative control: the holes read as jumps (the flattest blocks, which the estimator reads,
    # avoid some of them, not all: 3 times the level)
    assert estimate_noise_level(holes)[0] > 0.05
    with pytest.raises(ValueError, match="no 2x2 block"):
        checker = torch.ones(1, 1, 8, 8)
        checker[..., ::2, ::2] = 0
        estimate_noise_level(torch.rand(1, 1, 8, 8), checker)


def test_the_fill_keeps_the_observed_pixels_and_reaches_every_hole():
    x = torch.rand(1, 1, 64, 64, dtype=torch.float64)
    observed = torch.ones(1, 1, 64, 64, dtype=torch.float64)
    observed[..., 5:60, 2:62] = 0  # a hole far wider than the first smoothing scale
    filled = fill_missing(x * observed, observed)
    assert torch.equal(filled[observed > 0], x[observed > 0])
    kept = x[observed > 0]
    assert torch.isfinite(filled).all() and kept.min() <= filled.min() and filled.max() <= kept.max()


@pytest.mark.parametrize("missing, match", [
    (None, "needs its missing pixels"),
    (np.ones((64, 64), bool), "every pixel is marked missing"),
    (np.zeros((32, 32), bool), "mask has shape"),
    (np.stack([np.zeros((64, 64), bool), np.eye(64, dtype=bool)]), "mask has shape"),
    (np.array([["a"] * 64] * 64), "booleans or numbers"),
    (np.full((64, 64), np.nan), "NaN"),
])
def test_bad_masks_are_refused(camera64, missing, match):
    with pytest.raises(ValueError, match=match):
        ps.inpaint(camera64, missing, noise_level=0.01, progress=False)


def test_a_mask_of_the_image_turned_by_90_degrees_is_named_so(camera64):
    """A photograph read upright by its EXIF tag and a mask drawn on the stored pixels: the
    message says the mask is the image's size turned, not only that the shapes differ."""
    wide = camera64[..., :48]  # 64 x 48
    with pytest.raises(ValueError, match="turned by 90 degrees"):
        ps.inpaint(wide, np.zeros((48, 64), bool), noise_level=0.01, progress=False)


def test_a_colour_mask_per_channel_needs_the_opponent_mode(gray):
    rgb = torch.rand(3, 16, 16)
    missing = np.zeros((3, 16, 16), bool)
    missing[0, :4] = True
    with pytest.raises(ValueError, match="opponent colour mode"):
        ps.inpaint(rgb, missing, noise_level=0.01, denoiser=gray, color="per-channel", progress=False)
    # the same mask on every channel is one mask: channel by channel works
    same = np.repeat(missing[:1], 3, axis=0)
    r = ps.inpaint(rgb, same, noise_level=0.01, denoiser=gray, color="per-channel", max_iter=2, progress=False)
    assert r.image.shape == (3, 16, 16) and r.report["operator"]["mask_channels"] == 1


@pytest.mark.parametrize("level", [-0.01, float("nan"), 3.0])
def test_bad_inpainting_noise_levels_are_refused(camera64, level):
    with pytest.raises(ValueError, match="noise_level"):
        ps.inpaint(camera64, simulate=True, noise_level=level, progress=False)


def test_the_benchmark_says_when_its_data_are_missing(tmp_path, capsys):
    from bench_loader import load_bench_script

    bench = load_bench_script("bench_superres_inpaint")
    assert bench.main(["--data", str(tmp_path), "--denoisers", "gray"]) == 2
    assert "test001.png not found" in capsys.readouterr().err


def test_sure_sees_a_simulated_and_a_real_inpainting_alike(camera64, gray):
    # the holes are no measurements: counted as noisy data they lowered SURE by sigma^2 times the
    # missing fraction on real data (zeros there) but not on a simulation (noise there), and the
    # same observation chose 4x the rule's balance when given as real data, the rule when simulated
    missing = torch.rand(32, 32, generator=torch.Generator().manual_seed(2)) < 0.5
    common = dict(noise_level=0.02, denoiser=gray, strength="sure", progress=False)
    simulated = ps.inpaint(camera64[:, :32, :32], missing, simulate=True, **common)
    real = ps.inpaint(simulated.observation, missing, **common)
    a, b = (r.result.parameters["strength"] for r in (simulated, real))
    assert a["chosen_factor"] == b["chosen_factor"]
    assert [row["sure"] for row in a["tried"]] == pytest.approx([row["sure"] for row in b["tried"]], rel=1e-4)
    assert (simulated.observation[:, missing] == 0).all()  # the simulation's holes hold no noise


def test_a_tiny_image_has_no_ssim_rather_than_an_error(gray):
    r = ps.inpaint(torch.rand(1, 4, 50), simulate=True, noise_level=0.01, denoiser=gray, max_iter=2, progress=False)
    assert r.report["metrics"]["ssim"] is None and r.psnr is not None
    with pytest.raises(ValueError, match="at least 2 x 2 pixels, got 1 x 50"):
        estimate_noise_level(torch.rand(1, 1, 1, 50))


def test_the_subsampled_norm_bound_computes_only_the_kept_outputs(monkeypatch):
    """A factor-16 super-resolution of a 64 x 64 image (1024 x 1024, a 49 x 49 kernel) asked for 35 GB:
    the certifying convolutions ran at full resolution before keeping one output in 256."""
    import pnp_stable.operators.blur as blur
    from pnp_stable.operators import Downsample

    sizes = []
    real = blur.F.conv2d

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        sizes.append(out.shape[-2:])
        return out

    monkeypatch.setattr(blur.F, "conv2d", recording)
    op = Downsample(8, "gauss:4", (1, 256, 256), boundary="reflect")
    assert op.norm_kind == "certified" and 0 < op.norm() <= 1
    assert sizes and all(tuple(s) == (32, 32) for s in sizes)



def test_a_valid_boundary_simulation_starts_on_the_samples(camera64, gray):
    r = ps.super_resolve(camera64, 2, kernel="gauss:1", boundary="valid", simulate=True, noise_level=0.01,
                         denoiser=gray, progress=False, max_iter=20)  # 35 to converge: the start shows in 20
    from pnp_stable.operators import Downsample

    op = Downsample(2, "gauss:1", (1, 64, 64), boundary="valid")
    assert op.first_sample == (4, 4) and r.observation.shape == (1, 28, 28)
    assert r.report["metrics"]["psnr"] > r.report["metrics"]["psnr_input"] > 20  # an aligned start


def test_rgb_super_resolution_in_both_colour_modes(gray):
    rgb = torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(0))
    for color in ("opponent", "per-channel"):
        r = ps.super_resolve(rgb, 2, noise_level=0.02, denoiser=gray, color=color, max_iter=2, progress=False)
        assert r.image.shape == (3, 24, 20) and r.report["operator"]["output_shape"] == [3, 24, 20]


def test_an_inpainting_checkpoint_refuses_another_mask(camera64, gray, tmp_path):
    missing = torch.zeros(64, 64, dtype=torch.bool)
    missing[:10] = True
    state = tmp_path / "i.state"
    common = dict(noise_level=0.01, denoiser=gray, max_iter=2, progress=False, checkpoint=state)
    ps.inpaint(camera64, missing, **common)
    other = missing.clone()
    other[:, :3] = True
    with pytest.raises(ValueError, match="another problem"):
        ps.inpaint(camera64, other, resume=True, **common)


def test_a_checkpoint_refuses_a_transposed_kernel(camera64, gray, tmp_path):
    # the fingerprint hashes shapes too: a 1x5 and a 5x1 kernel hold the same bytes
    state = tmp_path / "d.state"
    row = np.full((1, 5), 0.2)
    common = dict(noise_level=0.01, denoiser=gray, max_iter=2, progress=False, checkpoint=state, simulate=True)
    ps.deblur(camera64, row, **common)
    with pytest.raises(ValueError, match="another problem"):
        ps.deblur(camera64, row.T, resume=True, **common)


def test_nan_marks_a_hole_as_well_as_any_value(camera64, gray):
    missing = torch.zeros(64, 64, dtype=torch.bool)
    missing[20:30, 20:30] = True
    marked = camera64.clone()
    marked[:, missing] = float("nan")
    r = ps.inpaint(marked, missing, noise_level=0.01, denoiser=gray, max_iter=3, progress=False)
    assert torch.isfinite(r.image).all()
    with pytest.raises(ValueError, match="NaN"):  # outside the holes NaN is still refused
        ps.inpaint(marked, torch.zeros(64, 64, dtype=torch.bool), noise_level=0.01, progress=False)


def test_a_clean_looking_estimate_is_flagged_for_super_resolution(camera64, gray):
    r = ps.super_resolve(camera64[:, ::2, ::2], 2, denoiser=gray, max_iter=2, progress=False)
    assert r.report["noise"]["source"] == "estimated"
    assert any("fine texture reads as noise" in n for n in r.notes)
    r0 = ps.super_resolve(camera64[:, ::2, ::2], 2, noise_level=0, denoiser=gray, max_iter=2, progress=False)
    assert r0.report["noise"]["raised_from"] == 0.0


def test_the_fill_terminates_when_a_channel_has_no_observed_pixel():
    x = torch.rand(1, 3, 40, 40, dtype=torch.float64)
    observed = torch.ones(1, 3, 40, 40, dtype=torch.float64)
    observed[:, 0] = 0
    filled = fill_missing(x * observed, observed)
    assert torch.isfinite(filled).all() and torch.equal(filled[:, 1:], x[:, 1:])


def test_a_simulation_with_a_given_mask_is_scored_on_the_whole_ground_truth(camera64, gray):
    """The values under the mask are ignored for a real observation, but a simulation's image is
    its ground truth: blanking them first scored the result against zeros in the holes."""
    from pnp_stable.restore import psnr

    missing = torch.zeros(64, 64, dtype=torch.bool)
    missing[20:40, 10:50] = True
    r = ps.inpaint(camera64, missing, simulate=True, noise_level=0, denoiser=gray, max_iter=5, progress=False)
    assert torch.equal(r.ground_truth, camera64)
    assert r.psnr == pytest.approx(psnr(r.image, camera64))
