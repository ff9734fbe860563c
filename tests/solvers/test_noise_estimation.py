"""The noise level estimate: unbiased on pure noise whatever blocks it reads, not fooled by a
photograph's texture or by clipped regions, as the plain MAD of the whole diagonal band is."""

import pytest
import torch
from skimage import data

from pnp_stable.solvers import estimate_noise_level


def plain_mad(y: torch.Tensor) -> float:
    """Donoho's estimator on every block: the reference the selection must beat."""
    a, b, c, d = y[..., 0::2, 0::2], y[..., 0::2, 1::2], y[..., 1::2, 0::2], y[..., 1::2, 1::2]
    return float(((a - b - c + d) / 2).abs().median()) / 0.6745


def noisy(clean: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return clean + sigma * torch.randn(clean.shape, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def camera():
    return torch.tensor(data.camera() / 255.0)[None, None]


@pytest.mark.parametrize("sigma", [0.002, 0.02, 0.2])
def test_pure_noise_is_read_without_bias(sigma):
    """The blocks are chosen by coefficients independent of the HH they read (white noise), so the
    choice leaves the estimate unbiased: over 10 draws the mean ratio is 1 within 1.5 %."""
    ratios = [estimate_noise_level(noisy(torch.full((1, 1, 256, 256), 0.5), sigma, seed))[0] / sigma
              for seed in range(10)]
    assert all(0.93 < r < 1.07 for r in ratios), ratios
    assert sum(ratios) / len(ratios) == pytest.approx(1.0, abs=0.015)


@pytest.mark.parametrize("sigma", [0.01, 0.05])
def test_pure_noise_on_a_ramp_is_read_without_bias(sigma):
    """On a ramp the clipping margin applies (its blocks near the extremes are left out) and the
    flattest quarter is chosen: still unbiased, within 1 % over 10 draws."""
    ramp = torch.linspace(0.1, 0.9, 256, dtype=torch.float64).expand(1, 1, 256, 256)
    ratios = [estimate_noise_level(noisy(ramp, sigma, seed))[0] / sigma for seed in range(10)]
    assert sum(ratios) / len(ratios) == pytest.approx(1.0, abs=0.01)


def test_missing_values_do_not_reach_their_neighbours():
    """NaN (or anything) in the holes of an inpainting: only fully observed blocks are read, and
    a hole's detail does not spill into its observed neighbours' activity."""
    g = torch.Generator().manual_seed(3)
    y = 0.5 + 0.02 * torch.randn(1, 1, 256, 256, generator=g, dtype=torch.float64)
    observed = torch.rand(1, 1, 256, 256, generator=g) > 0.1
    holes = torch.where(observed, y, torch.tensor(float("nan"), dtype=torch.float64))
    (estimate,) = estimate_noise_level(holes, observed)
    assert estimate == pytest.approx(0.02, rel=0.06)


@pytest.mark.parametrize("sigma_255", [2, 5, 10])
def test_a_photographs_texture_is_not_read_as_noise(camera, sigma_255):
    sigma = sigma_255 / 255
    y = noisy(camera, sigma, seed=0)
    (estimate,) = estimate_noise_level(y)
    assert estimate == pytest.approx(sigma, rel=0.05)
    # the plain estimator reads the texture too: 60 % too high at 2/255, 27 % at 5/255
    assert abs(plain_mad(y) - sigma) > 2 * abs(estimate - sigma)


def test_clipped_regions_are_left_out(camera):
    """40 % of the image saturated at 0 or 1, then noise of std 50/255 clipped: the plain
    estimator reads the flattened noise (28/255); the estimate stays within 8 %."""
    clean = camera * 1.6 - 0.3
    y = noisy(clean, 50 / 255, seed=0).clamp(0, 1)
    (estimate,) = estimate_noise_level(y)
    assert estimate == pytest.approx(50 / 255, rel=0.08)
    assert plain_mad(y) < 0.6 * 50 / 255


def test_small_and_noise_free_images():
    # a small image is read whole (1024 blocks at least): the plain estimate, within the data's spread
    y = noisy(torch.full((1, 1, 40, 40), 0.3), 0.05, seed=1)
    assert estimate_noise_level(y)[0] == pytest.approx(min(plain_mad(y), float(y.std())))
    assert estimate_noise_level(torch.full((1, 1, 2, 2), 0.5)) == [0.0]
    assert estimate_noise_level(torch.full((2, 3, 64, 64), 0.5)) == [0.0, 0.0]
    with pytest.raises(ValueError, match="at least 2 x 2"):
        estimate_noise_level(torch.zeros(1, 1, 1, 8))


def test_each_image_of_a_batch_and_every_channel(camera):
    clean = camera[..., :256, :256].expand(2, 3, 256, 256)
    levels = (0.01, 0.04)
    y = torch.cat([noisy(clean[i:i + 1], s, seed=i) for i, s in enumerate(levels)])
    for estimate, sigma in zip(estimate_noise_level(y), levels):
        assert estimate == pytest.approx(sigma, rel=0.06)


def test_the_benchmark_runs_on_a_tiny_train_folder(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    from bench_loader import load_bench_script

    bench = load_bench_script("bench_noise_estimate")
    assert bench.main(["--data", str(tmp_path)]) == 2 and "no BSDS500 train images" in capsys.readouterr().err
    train = tmp_path / "denoising/bsds500/images/train"
    train.mkdir(parents=True)
    ramp = np.tile(np.linspace(40, 200, 96), (80, 1)).astype(np.uint8)  # flat enough: the level is read
    for i in range(4):
        Image.fromarray(ramp).save(train / f"{i}.jpg", quality=100)
    out = tmp_path / "r.json"
    assert bench.main(["--data", str(tmp_path), "--images", "2", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["accuracy"]["whole"]["25"]["now"]["median"] == pytest.approx(25, rel=0.1)
    assert set(record["accuracy"]) == {"whole", "sampled by 2"} and record["superres"] == []


def test_the_estimate_is_bounded_by_the_data_and_its_caveats_are_said():
    from pnp_stable.solvers import noise_estimate_caveats

    # a checkerboard of 1-pixel squares is all diagonal detail: the plain MAD reads 0.5, more than
    # the data's own spread (0.25), which bounds the estimate
    board = 0.5 + 0.25 * (2 * ((torch.arange(64)[:, None] + torch.arange(64)) % 2) - 1).to(torch.float64)
    y = board.expand(1, 1, 64, 64)
    assert plain_mad(y) == pytest.approx(0.5 / 0.6745) and estimate_noise_level(y)[0] == pytest.approx(0.25, rel=0.01)
    assert any("fine texture was read as noise" in c for c in noise_estimate_caveats(y, estimate_noise_level(y)[0]))
    # mostly clipped at 0: said to be probably low
    dark = noisy(torch.full((1, 1, 128, 128), 0.02, dtype=torch.float64), 0.1, seed=0).clamp(0, 1)
    assert any("clipping flattens the noise" in c for c in noise_estimate_caveats(dark, estimate_noise_level(dark)[0]))
    # a photograph with moderate noise: nothing to say
    photo = noisy(torch.tensor(data.camera() / 255.0)[None, None], 5 / 255, seed=0)
    assert noise_estimate_caveats(photo, estimate_noise_level(photo)[0]) == []


@pytest.mark.parametrize("sigma_255", [1, 2, 5])
def test_8_bit_data_are_read_between_the_grid_steps(sigma_255):
    """|HH| of 8-bit data lies on a grid of 0.5/255, so its plain median moved in steps of 0.74/255
    once scaled (1/255 read 0.74 or 1.48): the grouped median reads between them. The level of
    rounded data is that of the noise and the rounding together, sqrt(sigma^2 + 1/12) steps."""
    expected = (sigma_255**2 + 1 / 12) ** 0.5
    estimates = []
    for seed in range(5):
        y = torch.round(noisy(torch.full((1, 1, 256, 256), 0.5, dtype=torch.float64), sigma_255 / 255, seed) * 255) / 255
        estimates.append(estimate_noise_level(y.float())[0] * 255)
    assert sum(estimates) / 5 == pytest.approx(expected, rel=0.03)
    if sigma_255 == 1:  # the plain median reads 0.74 or 1.48
        assert abs(plain_mad(y) * 255 - expected) > 0.25


def test_integer_data_are_refused_not_read_in_their_own_units():
    with pytest.raises(ValueError, match="floating-point data on the \\[0, 1\\] scale, got torch.uint8"):
        estimate_noise_level(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))


def _phantom_sinogram(size: int = 64, angles: int = 60) -> torch.Tensor:
    from skimage import data, transform

    from pnp_stable.operators import ParallelBeamCT

    image = transform.resize(data.shepp_logan_phantom(), (size, size), anti_aliasing=True)
    return ParallelBeamCT(size, angles=angles).A(torch.from_numpy(image)[None, None])


def test_sinogram_estimate_is_unbiased_on_pure_noise_of_any_shape():
    from pnp_stable.solvers.noise_estimation import estimate_sinogram_noise_level

    generator = torch.Generator().manual_seed(0)
    for shape in [(1, 1, 91, 60), (2, 1, 363, 20), (1, 1, 3, 400)]:
        readings = [level for _ in range(40)
                    for level in estimate_sinogram_noise_level(0.3 * torch.randn(*shape, generator=generator))]
        assert abs(sum(readings) / len(readings) / 0.3 - 1) < 0.03, (shape, sum(readings) / len(readings))


def test_sinogram_estimate_reads_low_noise_where_the_2d_estimate_reads_the_views_apart():
    """Sparse views differ by whole bins: the 2-D Haar band reads that as noise (several times the
    level at 0.1 %), the detector axis does not; and the sinogram's air at its minimum is read, not
    left out as if clipped."""
    from pnp_stable.solvers.noise_estimation import estimate_sinogram_noise_level

    clean = _phantom_sinogram().double()
    sigma = 0.001 * float(clean.max())
    y = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    detector, two_d = estimate_sinogram_noise_level(y)[0], estimate_noise_level(y)[0]
    assert 0.85 < detector / sigma < 1.2 and two_d / sigma > 2.5, (detector / sigma, two_d / sigma)
    # clipped at 0: the air's noise, squeezed to half, is left out (as in images) and the level is
    # read in the object's shadow, higher rather than lower; without the margin it read 0.45x
    clipped = y.clamp_min(0.0)
    assert estimate_sinogram_noise_level(clipped)[0] / sigma > 0.95


def test_sinogram_estimate_refuses_what_it_cannot_read():
    from pnp_stable.solvers.noise_estimation import estimate_sinogram_noise_level

    with pytest.raises(ValueError, match="at least 3 detectors"):
        estimate_sinogram_noise_level(torch.zeros(1, 1, 2, 10))
    with pytest.raises(ValueError, match="floating-point"):
        estimate_sinogram_noise_level(torch.zeros(1, 1, 9, 10, dtype=torch.int32))
    with pytest.raises(ValueError, match="n_detectors x n_angles"):
        estimate_sinogram_noise_level(torch.zeros(9, 10))

