"""The Python API refuses mistakes a user makes from Python with a ValueError naming the argument
(found by a review as a demanding user), and its result objects are usable on their own."""

import json

import numpy as np
import pytest
from skimage.data import camera
import torch

import pnp_stable as ps
from pnp_stable import restore
from pnp_stable.denoisers import DenoiserConfig, build_denoiser
from pnp_stable.operators import Blur
from pnp_stable.verification import empirical_averagedness_violation, empirical_lipschitz


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_denoiser(DenoiserConfig(width=3, hidden=4, blocks=1, embedding_dim=4)).eval()


@pytest.fixture(scope="module")
def image():
    return torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(1))


def _deblur(img, tiny, **kw):
    return restore.deblur(img, "gauss:1.0", simulate=True, max_iter=1, denoiser=tiny, device="cpu", progress=False, **kw)


def test_images_off_the_unit_scale_are_scaled_or_refused(tiny, image):
    with pytest.raises(ValueError, match=r"holds values in \[.*\]; images must be scaled to \[0, 1\]"):
        _deblur(image * 255, tiny)
    photograph = torch.from_numpy(camera()[::8, ::8].astype(np.float32) / 255)[None]
    with pytest.raises(ValueError, match="images must be scaled"):  # a zero-mean photograph
        restore.denoise(photograph - 0.5, 0.1, denoiser=tiny, device="cpu")
    as_bytes = (image * 255).round().to(torch.uint8)
    r = _deblur(as_bytes, tiny)
    assert "torch.uint8 samples scaled from [0, 255] to [0, 1]" in r.notes
    assert torch.allclose(r.ground_truth, as_bytes.float() / 255)
    _deblur(image * 1.1 - 0.05, tiny)  # a noisy observation may leave [0, 1] a little


def test_heavy_noise_on_dark_or_bright_regions_is_not_taken_for_another_scale(tiny):
    """Noise of std 50/255 takes single values far beyond [0, 1] (here to -0.8 and 1.8), which a
    test on the values alone refused; the means of 8 x 8 blocks stay in range."""
    flat = torch.zeros(1, 64, 64)
    flat[:, :, 32:] = 1.0
    noisy = flat + 50 / 255 * torch.randn(flat.shape, generator=torch.Generator().manual_seed(0))
    assert float(noisy.min()) < -0.6 and float(noisy.max()) > 1.6
    restore.check_unit_range(noisy)
    restore.denoise(noisy, 50 / 255, denoiser=tiny, device="cpu")
    with pytest.raises(ValueError, match="images must be scaled"):  # yet one wild value is refused
        restore.check_unit_range(torch.where(torch.arange(64) == 5, torch.tensor(2.6), flat))
    with pytest.raises(ValueError, match="images must be scaled"):  # and an edge cut short of a block
        restore.check_unit_range(torch.cat([flat, torch.full((1, 64, 4), -0.9)], dim=-1))  # 68 wide
    with pytest.raises(ValueError, match="images must be scaled"):  # and a uniform offset of a third
        restore.check_unit_range(flat[:, :, :32] - 0.3)


def test_a_complex_image_is_refused_not_cut_to_its_real_part(tiny, image):
    with pytest.raises(ValueError, match=r"the image is complex \(torch.complex64\); give its real values"):
        restore.deblur(image.to(torch.complex64) + 0.5j, "gauss", noise_level=0.01, simulate=True, device="cpu",
                       progress=False)


def test_a_channels_last_image_gets_the_permutation_it_needs(tiny):
    rgb = np.random.default_rng(0).random((24, 24, 3)).astype(np.float32)  # as skimage or PIL give it
    with pytest.raises(ValueError, match=r"expected channels first .*\(24, 24, 3\).*permute\(2, 0, 1\)"):
        restore.deblur(rgb, "gauss", device="cpu", progress=False)


def test_noise_levels_on_the_255_scale_are_refused(tiny, image):
    with pytest.raises(ValueError, match=r"got 25 \(e.g. 25/255 = 0.09804\)"):
        restore.denoise(image, 25, denoiser=tiny, device="cpu")
    with pytest.raises(ValueError, match="sigma 25 is above 1: noise levels are on the \\[0, 1\\] image scale"):
        tiny(image[None], 25.0)


def test_solve_names_a_two_dimensional_observation(tiny, image):
    op = Blur("gauss:1.0", (1, 32, 32))
    y = op.A(image[None])
    with pytest.raises(ValueError, match=r"y has shape \(32, 32\), but Blur works on batch x channels"):
        ps.solve(y[0, 0], op, tiny)


def test_an_observation_that_requires_grad_is_taken_as_data(tiny, image):
    import warnings

    op = Blur("gauss:1.0", (1, 32, 32))
    y = op.simulate(image[None], 0.01, seed=0).requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warned when the noise estimate met float() on such a y
        result = ps.solve(y, op, tiny, max_iter=2, progress=False)
    assert not result.x.requires_grad


def test_ct_angles_must_match_the_sinogram_and_may_list_them(tiny):
    from pnp_stable.operators import ParallelBeamCT

    op = ParallelBeamCT(32, angles=[0.0, 20.0, 50.0, 90.0, 130.0, 170.0])
    phantom = torch.zeros(1, 1, 32, 32)
    phantom[..., 10:22, 8:20] = 0.8
    sino = op.simulate(phantom, 0.05, seed=0)[0]
    common = dict(denoiser=tiny, max_iter=1, device="cpu", progress=False, noise_level=0.05)
    with pytest.raises(ValueError, match="the sinogram has 6 angles .* but 30 were given"):
        restore.reconstruct_ct(sino, angles=30, **common)
    listed = restore.reconstruct_ct(sino, angles=[0.0, 20.0, 50.0, 90.0, 130.0, 170.0], **common)
    uniform = restore.reconstruct_ct(sino, **common)
    assert listed.report["operator"]["angles"] == 6 and not torch.equal(listed.image, uniform.image)
    with pytest.raises(ValueError, match="not both"):
        restore.reconstruct_ct(phantom[0], simulate=True, noise_level=0.1, relative_noise_level=0.01, denoiser=tiny,
                               device="cpu")


def test_a_restoration_reports_saves_and_plots_itself(tiny, image, tmp_path):
    r = _deblur(image, tiny)
    assert r.guarantee is r.result.guarantee
    r.to_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["solver"]["guarantee"]["holds"] == r.guarantee.holds
    r.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="cannot plot to a file without a suffix; use one of .*\\.pdf"):
        r.plot(tmp_path / "r")
    assert repr(r).startswith("Restoration(restored  PSNR ")


def test_a_cuda_request_without_a_gpu_is_worded_for_the_api(image, tiny):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="device 'cuda' was requested but no CUDA GPU is available; use 'cpu'"):
        restore.deblur(image, "gauss", device="cuda")


def test_verification_arguments_are_checked():
    half = lambda z: 0.5 * z  # noqa: E731
    with pytest.raises(ValueError, match="without the batch dimension"):
        empirical_lipschitz(half, (), restarts=1, steps=1, n_pairs=1)
    with pytest.raises(ValueError, match="restarts must be an integer >= 1"):
        empirical_lipschitz(half, (1, 4, 4), restarts=0)
    with pytest.raises(ValueError, match="n_pairs must be an integer >= 1"):
        empirical_lipschitz(half, (1, 4, 4), n_pairs=0)
    for alpha in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\]"):
            empirical_averagedness_violation(half, alpha, (1, 4, 4), restarts=1, steps=1, n_pairs=1)
    assert empirical_lipschitz(half, (1, 4, 4), restarts=1, steps=2, n_pairs=2) == pytest.approx(0.5)
    assert np.isfinite(empirical_averagedness_violation(half, 0.5, (1, 4, 4), restarts=1, steps=2, n_pairs=2))


def test_one_name_for_the_noise_level_across_the_api():
    import inspect

    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable.protocols import ForwardOperator

    takers = (restore.deblur, restore.reconstruct_ct, restore.denoise, ps.solve, Blur.simulate,
              ParallelBeamCT.simulate, ForwardOperator.simulate)
    for function in takers:
        assert "noise_level" in inspect.signature(function).parameters, function.__qualname__
    assert "relative_noise_level" in inspect.signature(restore.reconstruct_ct).parameters


def test_denoise_returns_a_restoration_without_iterations(tiny, image, tmp_path):
    r = restore.denoise(image, 0.1, denoiser=tiny, device="cpu", simulate=True)
    assert isinstance(r, restore.Restoration) and r.result is None and r.guarantee is None
    assert r.image.shape == image.shape and torch.equal(r.ground_truth, image)
    assert r.report["noise"] == {"sigma": 0.1, "source": "given"}
    metrics = r.report["metrics"]
    assert r.psnr == metrics["psnr"] and metrics["psnr_input"] == pytest.approx(restore.psnr(r.observation, image))
    assert 18 < metrics["psnr_input"] < 22  # the observation is the noisy image (std 0.1: 20 dB)
    r.to_json(tmp_path / "d.json")
    assert json.loads((tmp_path / "d.json").read_text())["metrics"]["psnr"] == r.psnr
    with pytest.raises(ValueError, match="no iterations to plot"):
        r.plot()
    assert repr(r).startswith("Restoration(denoised  PSNR ") and "noise level 25.50/255" in repr(r)
    plain = restore.denoise(image, 0.1, denoiser=tiny, device="cpu")
    assert plain.ground_truth is None and plain.psnr is None and torch.equal(plain.observation, image)


def test_the_tasks_refuse_levels_on_the_255_scale_and_a_batch(tiny, image):
    with pytest.raises(ValueError, match=r"noise_level must be a positive number on the \[0, 1\] scale, got 2.55 "
                                         r"\(e.g. 2.55/255 = 0.01\)"):
        _deblur(image, tiny, noise_level=2.55)
    with pytest.raises(ValueError, match="noise_level must be a positive number"):
        _deblur(image, tiny, noise_level="0.01")
    with pytest.raises(ValueError, match=r"got a batch of shape \(2, 1, 32, 32\): restore its images one by one"):
        _deblur(torch.stack([image, image]), tiny)


def test_solve_takes_accelerate_as_a_bool_like_the_tasks(tiny, image):
    op = Blur("gauss:1.0", (1, 32, 32))
    y = op.simulate(image[None], 0.01, seed=0)

    def run(accelerate):
        return ps.solve(y, op, tiny, max_iter=6, progress=False, accelerate=accelerate)

    assert torch.equal(run(True).x, run("anderson").x) and torch.equal(run(False).x, run(None).x)
    assert not torch.equal(run(True).x, run(False).x)
    with pytest.raises(ValueError, match="accelerate must be None, 'anderson' or a bool"):
        run("yes")


def test_a_sinogram_on_another_scale_is_reconstructed_on_the_denoisers_scale():
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    from pnp_stable.operators import ParallelBeamCT

    phantom = torch.tensor(resize(shepp_logan_phantom(), (48, 48)), dtype=torch.float32)[None, None]
    op = ParallelBeamCT(48, angles=40)

    def reconstruct(scale):
        y = op.simulate(phantom * scale, 0.01 * float(op.A(phantom * scale).max()), seed=0)[0]
        r = restore.reconstruct_ct(y, denoiser="gray", max_iter=40, progress=False, device="cpu")
        error = float((r.image - phantom[0] * scale).norm() / (phantom * scale).norm())
        assert torch.allclose(r.observation, y, rtol=1e-6, atol=0) and r.guarantee.holds and r.result.monotone
        return r, error

    unit, unit_error = reconstruct(1.0)
    assert unit.report["operator"]["data_scale"] == 1.0 and not any("FBP peaks" in n for n in unit.notes)
    results = {}
    for scale in (5.0, 0.02):  # before: clipped at 1, or the denoiser at the wrong noise level (12 % error)
        r, error = reconstruct(scale)
        assert any("FBP peaks near" in n for n in r.notes) and r.report["operator"]["data_scale"] != 1.0
        assert error < 1.2 * unit_error and float(r.image.max()) > 0.8 * scale
        results[scale] = r
    big, small = results[5.0], results[0.02]
    # a given noise level is on the sinogram's scale: it is divided like the data
    y = op.simulate(phantom * 5.0, 0.5, seed=0)[0]
    given = restore.reconstruct_ct(y, noise_level=0.5, denoiser="gray", max_iter=1, progress=False, device="cpu")
    assert given.report["noise"]["sigma"] == pytest.approx(0.5)  # reported on the sinogram's scale
    assert given.report["noise"]["sigma_rescaled"] == pytest.approx(0.5 / given.report["operator"]["data_scale"])
    assert torch.allclose(big.image / 5.0, small.image / 0.02, rtol=1e-3, atol=1e-4)  # scale-equivariant


def test_a_ct_size_that_does_not_match_the_detectors_is_refused_before_the_operator_is_built(tiny, monkeypatch):
    # the operator's rotation grids for a wrong, large --size alone could exhaust the memory
    import pnp_stable.operators as operators

    built = []
    real = operators.ParallelBeamCT

    def spy(n, **kw):
        built.append(n)
        assert n <= 1024, "the operator was built for the wrong size"
        return real(n, **kw)

    monkeypatch.setattr(operators, "ParallelBeamCT", spy)
    sino = torch.rand(1, 46, 12)  # 46 detectors: a 32x32 image
    with pytest.raises(ValueError, match="sinogram has 46 detectors but a 8192x8192 image needs 11586"):
        restore.reconstruct_ct(sino, image_size=8192, denoiser=tiny, device="cpu", progress=False, noise_level=0.05)
    assert built == []


def test_a_noise_free_image_is_balanced_against_the_rounding_level(tiny):
    """An estimate of 0 (the flattest blocks of a clean image hold no noise) used to stop a
    restoration of a real image; it now takes the 8-bit rounding level, and says so. An 8-bit
    image's estimate is never quite 0 (the grouped median of its rounded values), but below the
    rounding level: the same floor."""
    from pnp_stable.observations import QUANTISATION_NOISE_LEVEL

    flat = torch.full((1, 48, 48), 0.123)  # off the 8-bit grid: the plain median, 0
    flat[:, 10:30, 12:40] = 0.8
    r = restore.deblur(flat, "gauss:1.0", max_iter=2, denoiser=tiny, device="cpu", progress=False)
    assert r.report["noise"] == {"sigma": pytest.approx(QUANTISATION_NOISE_LEVEL), "source": "estimated",
                                 "raised_from": 0.0}
    assert any("it looks noise-free" in note for note in r.notes)
    assert any("balanced against the 8-bit rounding level (0.29/255)" in note for note in r.notes)
    d = restore.denoise(flat, denoiser=tiny, device="cpu")
    assert d.report["noise"]["raised_from"] == 0.0 and any("the denoiser runs at the 8-bit" in n for n in d.notes)
    s = restore.super_resolve(flat, 2, max_iter=1, denoiser=tiny, device="cpu", progress=False)
    assert not any("fine texture reads as noise" in n for n in s.notes)  # it read none
    eight_bit = torch.round(flat * 255) / 255
    r = restore.deblur(eight_bit, "gauss:1.0", max_iter=2, denoiser=tiny, device="cpu", progress=False)
    assert 0 < r.report["noise"]["raised_from"] < QUANTISATION_NOISE_LEVEL
    assert r.report["noise"]["sigma"] == pytest.approx(QUANTISATION_NOISE_LEVEL)
    with pytest.raises(ValueError, match="looks noise-free"):  # a sinogram has no rounding level to fall back on
        restore.reconstruct_ct(torch.zeros(16, 12), denoiser=tiny, device="cpu", progress=False, max_iter=1)


def test_below_its_trained_range_the_denoiser_is_relaxed_not_extrapolated():
    """At 1/255 the shipped model (trained from 5/255) asked for a level it never saw lost about
    3 dB against the noisy input; run at 5/255 and relaxed by t = (1/5)^2 it does not."""
    from pnp_stable.denoisers import load

    image = torch.from_numpy(camera()[100:228, 150:278].astype(np.float32) / 255)[None]
    r = restore.denoise(image, 1 / 255, simulate=True, denoiser="gray", device="cpu")
    assert r.report["denoiser"]["sigma_den"] == pytest.approx(5 / 255) and r.report["denoiser"]["relaxation"] == pytest.approx(0.04)
    assert any("relaxed by t = 0.04" in note for note in r.notes)
    assert r.psnr > r.report["metrics"]["psnr_input"]
    with torch.inference_mode():
        extrapolated = load("gray")(r.observation[None], 1 / 255).clamp(0, 1)[0]
    assert r.psnr > restore.psnr(extrapolated, image) + 1


def test_an_estimate_with_a_reason_to_doubt_it_says_so(tiny):
    dark = (0.02 + 0.1 * torch.randn(1, 96, 96, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    r = restore.denoise(dark, denoiser=tiny, device="cpu")
    assert any("clipping flattens the noise, so the level may be too low; give the level" in n for n in r.notes)


def test_tiny_given_noise_levels_are_floored_not_obeyed(tiny, image):
    """Review 2026-12-06: deblur with a given 1e-12 put the rule's weight at ~1e18 (an unregularised
    deconvolution, 5 dB, "converged"); CT likewise. Both now floor it, with a note."""
    result = restore.deblur(image, "gauss:1.6", noise_level=1e-12, simulate=True, device="cpu", progress=False,
                            denoiser=tiny, max_iter=5)
    assert any("is below 1e-05: the regularisation is balanced against 1e-05" in n for n in result.notes), result.notes
    assert result.report["noise"]["raised_from"] == 1e-12
    small = restore.deblur(image, "gauss:1.6", noise_level=5e-4, simulate=True, device="cpu", progress=False,
                           denoiser=tiny, max_iter=1)  # a small true level of float data is obeyed
    assert "raised_from" not in small.report["noise"] and small.report["noise"]["sigma"] == 5e-4
    phantom = torch.zeros(1, 24, 24)
    phantom[:, 6:18, 6:18] = 0.7
    ct = restore.reconstruct_ct(phantom, simulate=True, angles=12, noise_level=1e-12, denoiser=tiny, max_iter=2,
                                progress=False, device="cpu")
    assert any("below 0.0001 x the sinogram's maximum" in note for note in ct.notes), ct.notes
