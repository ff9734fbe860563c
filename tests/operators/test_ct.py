"""ParallelBeamCT: exact adjoint, certified (cached) norm, prox, FBP, presets, errors."""

import json
import math

import numpy as np
import pytest
import torch
from operator_test_helpers import explicit_matrix, relative_adjoint_error

from pnp_stable.operators import FanBeamCT, ParallelBeamCT, sinogram_from_skimage
from pnp_stable.operators.cache import cache_dir
from pnp_stable.protocols import ForwardOperator


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PNP_STABLE_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("detector", ["full", "circle"])
@pytest.mark.parametrize("shape", [(1, 1, 12, 12), (2, 3, 11, 11)])
def test_adjointness_float32(detector, shape):
    op = ParallelBeamCT(shape[-1], angles=9, detector=detector)
    x = torch.randn(shape)
    assert relative_adjoint_error(op, x) < 1e-5
    assert float(op.adjointness_test(u=x)) < 1e-5
    assert isinstance(op, ForwardOperator)


def test_matches_deepinv_tomography_and_shapes():
    from deepinv.physics import Tomography

    op = ParallelBeamCT(14, angles=10)
    theirs = Tomography(angles=10, img_width=14, normalize=False, adjoint_via_backprop=True)
    x = torch.rand(2, 1, 14, 14)
    y = op.A(x)
    assert y.shape == (2, 1, math.ceil(math.sqrt(2) * 14), 10)
    torch.testing.assert_close(y, theirs.A(x))
    assert ParallelBeamCT(14, angles=10, detector="circle").A(x).shape == (2, 1, 14, 10)


@pytest.mark.parametrize("fan", [False, True])
@pytest.mark.parametrize("circle", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_sampling_grids_built_view_by_view_are_deepinv_s(fan, circle, dtype, monkeypatch):
    """deepinv's grids for every view, built a few views at a time into one tensor (a chunk of 3 views
    here, 7 views in all: the last chunk shorter), equal its own construction bit for bit; the operator
    keeps no back-projector grids."""
    import warnings

    from deepinv.physics import Tomography

    from pnp_stable.operators import ct

    angles = torch.linspace(0, 180, 8, dtype=dtype)[:-1] + 0.3
    options = dict(img_width=17, parallel_computation=True, adjoint_via_backprop=True, normalize=False, dtype=dtype,
                   circle=circle, fan_beam=fan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole, one = Tomography(angles=angles, **options), Tomography(angles=angles[:1], **options)
    _, height, width, _ = one.radon.all_grids.shape
    monkeypatch.setattr(ct, "GRID_POINTS_PER_CHUNK", 3 * height * width + 5)
    assert torch.equal(ct._sampling_grids(one.radon, angles, 17, circle), whole.radon.all_grids)
    op = ParallelBeamCT(12, angles=7)
    assert op._tomography(torch.zeros(1, 1, 12, 12, dtype=dtype)).iradon is None


@pytest.mark.parametrize("build", [lambda: ParallelBeamCT(17, angles=7), lambda: ParallelBeamCT(16, angles=9, detector="circle"),
                                   lambda: ParallelBeamCT(24, angles=33, detector_offset=1.3), lambda: FanBeamCT(16, angles=11)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_projection_chunk_by_chunk_is_deepinv_s(build, dtype, monkeypatch):
    """A and its transpose, a chunk of views at a time, against deepinv's Tomography on the same grids:
    bit for bit with every view in one chunk, to rounding with one view per chunk."""
    from pnp_stable.operators import ct

    op = build()
    x = torch.rand(2, 3, op.image_size, op.image_size, dtype=dtype)
    tomography = op._tomography(x)
    y = torch.randn(op.output_shape_for(x.shape), dtype=dtype)
    exact, transposed = tomography.A(x), tomography.A_adjoint(y)
    assert torch.equal(ct._project(tomography.radon, x), exact)
    assert torch.equal(ct._project_transposed(tomography.radon, y, op.image_size), transposed)
    monkeypatch.setattr(ct, "GRID_POINTS_PER_CHUNK", 1)
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ct._project(tomography.radon, x), exact, **tolerance)
    torch.testing.assert_close(ct._project_transposed(tomography.radon, y, op.image_size), transposed, **tolerance)


@pytest.mark.parametrize("detector", ["full", "circle"])
def test_norm_is_certified_and_tight(detector):
    op = ParallelBeamCT(10, angles=[0.0, 17.0, 45.0, 90.0, 133.0], detector=detector)
    matrix = explicit_matrix(op.A, (1, 10, 10))
    assert float(matrix.min()) >= 0.0  # the premise of the Collatz-Wielandt certificate
    exact = float(torch.linalg.matrix_norm(matrix, ord=2))
    bound = op.norm_bound()
    assert op.norm_kind == bound.kind == "certified"
    assert exact <= op.norm() <= exact * (1 + 1e-5)
    assert bound.lower <= exact * (1 + 1e-9)


def test_norm_is_cached_on_disk_and_a_bad_cache_is_rejected():
    first = ParallelBeamCT(10, angles=6)
    value = first.norm()
    assert first.norm_bound().details["cached"] is False
    files = list((cache_dir() / "ct-norms").glob("*.json"))
    assert len(files) == 1 and not list((cache_dir() / "ct-norms").glob(".tmp-*"))
    second = ParallelBeamCT(10, angles=6)
    assert second.norm() == value and second.norm_bound().details["cached"] is True
    # another geometry is another entry
    ParallelBeamCT(10, angles=7).norm()
    assert len(list((cache_dir() / "ct-norms").glob("*.json"))) == 2
    # an entry understating the norm is detected and recomputed
    entry = json.loads(files[0].read_text())
    entry["result"]["upper"] = entry["result"]["lower"] = value / 2
    files[0].write_text(json.dumps(entry))
    third = ParallelBeamCT(10, angles=6)
    assert third.norm() == pytest.approx(value) and third.norm_bound().details["cached"] is False
    files[0].write_text("{ not json")
    assert ParallelBeamCT(10, angles=6).norm() == pytest.approx(value)


def test_normalize_gives_norm_at_most_one():
    op = ParallelBeamCT(10, angles=5, normalize=True)
    exact = float(torch.linalg.matrix_norm(explicit_matrix(op.A, (1, 10, 10)), ord=2))
    assert exact <= op.norm() == pytest.approx(1.0)
    assert exact > 0.9999
    x = torch.randn(1, 1, 10, 10)
    assert relative_adjoint_error(op, x) < 1e-5


@pytest.mark.parametrize("beam", ["parallel", "fan"])
def test_prox_optimality_and_warm_start(beam):
    from pnp_stable.operators import FanBeamCT

    op = ParallelBeamCT(12, angles=8) if beam == "parallel" else FanBeamCT(12, angles=16)
    x = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    y = op.simulate(x, 0.1, seed=0)
    z = torch.rand_like(x)
    gamma = 0.05
    p = op.prox_data(z, y, gamma)
    grad = gamma * op.A_adjoint(op.A(p) - y) + (p - z)
    assert float(grad.norm() / (gamma * op.A_adjoint(y) + z).norm()) < 1e-9
    cold = op.last_prox_info.iterations
    op.prox_data(z + 1e-3 * torch.rand_like(z), y, gamma)
    assert op.last_prox_info.all_converged and op.last_prox_info.iterations < cold


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_fourier_preconditioner_is_spd_and_saves_cg_iterations(dtype):
    """The preconditioned CG prox reaches the same tolerance on the true residual in fewer iterations;
    the preconditioner is symmetric and positive definite (a random quadratic form and pair)."""
    n = 32
    op = ParallelBeamCT(n, angles=40)
    gamma = torch.tensor([0.003, 0.03], dtype=torch.float64).reshape(-1, 1, 1, 1)
    apply = op._cg_preconditioner(gamma)
    gen = torch.Generator().manual_seed(0)
    u, v = (torch.randn(2, 1, n, n, generator=gen, dtype=torch.float64) for _ in range(2))
    pu, pv = apply(u), apply(v)
    assert torch.allclose((pu * v).flatten(1).sum(1), (u * pv).flatten(1).sum(1), rtol=1e-10)
    assert bool(((pu * u).flatten(1).sum(1) > 0).all())
    x = torch.rand(2, 1, n, n, generator=gen, dtype=torch.float64)
    y = op.simulate(x, 0.5, seed=1).to(dtype)
    z = torch.rand(2, 1, n, n, generator=gen, dtype=torch.float64).to(dtype)
    counts = {}
    for name, preconditioner in (("plain", lambda g: None), ("fourier", op._cg_preconditioner)):
        fresh = ParallelBeamCT(n, angles=40)
        fresh._cg_preconditioner = preconditioner
        p = fresh.prox_data(z, y, gamma.reshape(-1))
        info = fresh.last_prox_info
        assert info.all_converged
        grad = gamma * fresh.A_adjoint(fresh.A(p.double()) - y.double()) + (p.double() - z.double())
        assert float(grad.norm() / (gamma * fresh.A_adjoint(y.double()) + z.double()).norm()) < (
            1e-9 if dtype == torch.float64 else 1e-6)
        counts[name] = info.iterations
    assert counts["fourier"] < 0.75 * counts["plain"], counts


def test_fbp_reconstructs_a_smooth_phantom():
    n = 20
    r = torch.linspace(-1, 1, n)
    phantom = (r[:, None] ** 2 + r[None, :] ** 2 < 0.4).double()[None, None]
    op = ParallelBeamCT(n, angles=30)
    reconstruction = op.fbp(op.A(phantom))
    correlation = torch.corrcoef(torch.stack([reconstruction.flatten(), phantom.flatten()]))[0, 1]
    assert float(correlation) > 0.95
    normalized = ParallelBeamCT(n, angles=30, normalize=True)
    torch.testing.assert_close(normalized.fbp(normalized.A(phantom)), reconstruction, rtol=1e-6, atol=1e-6)


def test_presets():
    sparse = ParallelBeamCT.sparse_view(8, n_angles=12)
    np.testing.assert_allclose(sparse.angles_deg, np.arange(12) * 15.0)
    limited = ParallelBeamCT.limited_angle(8, max_angle=30)
    assert len(limited.angles_deg) == 30 and limited.angles_deg.max() < 30
    assert limited.A(torch.rand(1, 1, 8, 8)).shape[-1] == 30
    few = ParallelBeamCT.limited_angle(8, 120, n_angles=10)
    np.testing.assert_allclose(few.angles_deg, np.arange(10) * 12.0)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ParallelBeamCT((8, 9)), "square"),
        (lambda: ParallelBeamCT(1), "image_size"),
        (lambda: ParallelBeamCT(8, angles=0), "number of angles"),
        (lambda: ParallelBeamCT(8, angles=[0.0, float("nan")]), "NaN"),
        (lambda: ParallelBeamCT(8, angles=np.zeros((2, 2))), "1-D"),
        (lambda: ParallelBeamCT(8, angles=True), "count"),
        (lambda: ParallelBeamCT(8, detector="fan"), "detector"),
        (lambda: ParallelBeamCT.sparse_view(8, n_angles=0), "n_angles"),
        (lambda: ParallelBeamCT.limited_angle(8, max_angle=200), "max_angle"),
    ],
)
def test_construction_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_call_errors():
    op = ParallelBeamCT(8, angles=4)
    cases = [
        (lambda: op.A(torch.rand(1, 1, 8, 9)), "spatial size"),
        (lambda: op.A(torch.rand(8, 8)), "batch, channels"),
        (lambda: op.A_adjoint(torch.rand(1, 1, 8, 4)), "spatial size"),
        (lambda: op.A(torch.rand(1, 1, 8, 8).half()), "float32 or float64"),
        (lambda: op.fbp(torch.full((1, 1, 12, 4), float("nan"))), "NaN"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


# --- geometry conventions (docs/operators.md, "Geometry and sinogram layout") ------------------
def _phantom(n):
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("detector", ["full", "circle"])
def test_detector_bin_formula_for_a_point(detector):
    # bin = (G - 1)/2 + (col - c) cos(theta) + (c - row) sin(theta), c = (n - 1)/2 the image centre
    # (G = 20, 22, 23, 25: even and odd G, even and odd n, and G - n odd for 15 and 16, where deepinv's
    # own axis lies half a pixel off the centre)
    for n in (14, 15, 16, 17):
        op = ParallelBeamCT(n, angles=[0.0, 90.0, 180.0], detector=detector)
        G = op.n_detectors
        c = (n - 1) / 2
        assert G == (math.ceil(math.sqrt(2) * n) if detector == "full" else n)
        x = torch.zeros(1, 1, n, n, dtype=torch.float64)
        row, col = 5, n - 5  # inside the inscribed disc
        x[0, 0, row, col] = 1.0
        y = op.A(x)[0, 0].numpy()
        assert y.shape == (G, 3)
        for j, theta in enumerate((0.0, 90.0, 180.0)):
            t = math.radians(theta)
            expected = (G - 1) / 2 + (col - c) * math.cos(t) + (c - row) * math.sin(t)
            assert (np.arange(G) * y[:, j]).sum() / y[:, j].sum() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("n, detector, circle, tolerance", [
    (64, "full", False, 0.02), (128, "full", False, 6e-3), (128, "circle", True, 6e-3), (65, "full", False, 0.02),
    (65, "circle", True, 0.0), (67, "full", False, 0.0)])
def test_skimage_radon_relation(n, detector, circle, tolerance):
    from skimage.transform import radon

    p = _phantom(n)
    theta = np.linspace(0, 180, 36, endpoint=False)
    s = radon(p, theta=theta, circle=circle)
    op = ParallelBeamCT(n, angles=36, detector=detector)
    np.testing.assert_allclose(op.angles_deg, theta)
    ours = op.A(torch.tensor(p)[None, None])[0, 0].numpy()
    assert s.shape == ours.shape == (op.n_detectors, 36)
    # skimage turns about pixel n//2 (read at bin G//2), this tool about the centre (n - 1)/2: for an even
    # n they differ by half a pixel in both axes, and for an even G the bins by half a bin as well; with
    # odd n and G (65 circle, 67 full) they agree. A half-bin shift interpolates a sinogram's edges:
    # measured 1.6 % at n = 64 and 65, 0.4 % at 128 (0.6 % at 256)
    converted = sinogram_from_skimage(s, detector=detector)
    if tolerance == 0.0:
        assert _relative(s, ours) < 1e-12 and _relative(converted, ours) < 1e-12
    else:
        assert _relative(s, ours) > 0.05
        assert _relative(converted, ours) < tolerance


@pytest.mark.parametrize("n", [8, 9, 21])
def test_object_support_is_exactly_the_pixels_the_operator_sees(n):
    """Outside ``object_support()`` a circle detector's A is zero; inside every pixel reaches some
    bin (A^T of all-ones is nonzero exactly there). The full detector sees every pixel."""
    op = ParallelBeamCT(n, angles=17, detector="circle")
    support = op.object_support(torch.float64)
    seen = op.A_adjoint(torch.ones(1, 1, n, 17, dtype=torch.float64)) != 0
    assert torch.equal(seen, support > 0) and 0 < int(support.sum()) < n * n
    assert float(op.A(1 - support).abs().max()) == 0.0
    assert bool((ParallelBeamCT(n, angles=5).object_support() == 1).all())


@pytest.mark.parametrize("n", [15, 16, 24])
def test_geometry_matches_the_astra_toolbox(n):
    """Sinograms by the ASTRA Toolbox (stored: tests/operators/data/make_astra_reference.py) of a
    smooth off-centre object: same rotation axis (the image centre), bin order, angle direction and,
    for the fan beam, distances and cell spacing. deepinv's own axis lies half a pixel off the centre
    when G - n is odd (n = 15, 16): 29 to 31 % apart before the axis was moved; what remains is the
    projectors' different sampling (measured: parallel 0.7 to 1.9 %, fan 3.9 to 8.5 %, less at
    larger sizes: 0.2 % and 0.8 % at 256 x 256)."""
    from pathlib import Path

    from pnp_stable.operators import FanBeamCT

    reference = np.load(Path(__file__).with_name("data") / "astra_reference.npz")
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64) - (n - 1) / 2  # as make_astra_reference.smooth_object
    image = (np.exp(-(((rows + 0.21 * n) / (0.12 * n)) ** 2 + ((cols - 0.17 * n) / (0.08 * n)) ** 2))
             + 0.6 * np.exp(-(((rows - 0.15 * n) / (0.07 * n)) ** 2 + ((cols + 0.2 * n) / (0.13 * n)) ** 2)))
    x = torch.from_numpy(image)[None, None]
    parallel = ParallelBeamCT(n, angles=np.arange(12) * 15.0).A(x)[0, 0].numpy()
    assert _relative(parallel, reference[f"parallel_{n}"]) < 0.025
    source, detector, spacing, cells = reference[f"fan_{n}_geometry"]
    fan = FanBeamCT(n, angles=np.arange(10) * 36.0 + 7.0, source_distance=float(source),
                    detector_distance=float(detector), detector_spacing=float(spacing), n_detectors=int(cells))
    assert _relative(fan.A(x)[0, 0].numpy(), reference[f"fan_{n}"]) < (0.1 if n < 20 else 0.05)


@pytest.mark.parametrize("n", [64, 65, 128])
def test_fbp_reconstructs_a_disc_at_its_level(n):
    """The parallel FBP's amplitude and centring (it sets a measured sinogram's scale): a uniform disc
    comes back at its value inside, for sizes where deepinv's axis sat off the centre (64: G - n odd)
    and where it did not (65, 128). Measured mean errors 0.002 to 0.004; 0.7 x the FBP gave 0.3."""
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64) - (n - 1) / 2
    disc = torch.from_numpy(((rows - 3) ** 2 + (cols + 5) ** 2 <= (0.3 * n) ** 2).astype(np.float64))[None, None]
    inner = torch.from_numpy((rows - 3) ** 2 + (cols + 5) ** 2 <= (0.25 * n) ** 2)
    op = ParallelBeamCT(n, angles=180)
    error = (op.fbp(op.A(disc))[0, 0] - disc[0, 0])[inner].abs().mean()
    assert float(error) < 0.02


@pytest.mark.parametrize("offset", [2.0, -3.0, 0.4, -1.3])
def test_a_detector_offset_moves_the_rotation_axis_off_the_centre_bin(offset):
    """Bin b of a detector shifted by ``offset`` reads the line bin b + offset of a centred one reads:
    a point's projection centres on (G - 1)/2 - offset + (col - c) cos + (c - row) sin, and an integer
    offset is the centred sinogram shifted by whole bins (exactly)."""
    n = 16
    angles = [0.0, 90.0, 180.0, 270.0]  # a pixel's bilinear footprint centres exactly along the axes
    centred, shifted = ParallelBeamCT(n, angles=angles), ParallelBeamCT(n, angles=angles, detector_offset=offset)
    G, c = shifted.n_detectors, (n - 1) / 2
    x = torch.zeros(1, 1, n, n, dtype=torch.float64)
    row, col = 4, 11
    x[0, 0, row, col] = 1.0
    y = shifted.A(x)[0, 0].numpy()
    for j, theta in enumerate(angles):
        t = math.radians(theta)
        expected = (G - 1) / 2 - offset + (col - c) * math.cos(t) + (c - row) * math.sin(t)
        assert (np.arange(G) * y[:, j]).sum() / y[:, j].sum() == pytest.approx(expected, abs=1e-9)
    if offset == int(offset):
        k = int(offset)
        centred, shifted = (ParallelBeamCT(n, angles=[0.0, 30.0, 77.0, 150.0], detector_offset=o) for o in (0.0, k))
        x = torch.rand(2, 1, n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        a, b = centred.A(x), shifted.A(x)
        same = (b[..., :G - k, :] - a[..., k:, :]) if k > 0 else (b[..., -k:, :] - a[..., :G + k, :])
        assert float(same.abs().max()) < 1e-12


def test_an_offset_detector_keeps_the_guarantees_and_reconstructs_in_place():
    """Exact adjoint, certified norm (the matrix stays non-negative), its own cache key, and an FBP
    that puts a disc where it is: one that ignored the offset (1.3 bins) had 3.1 times the error."""
    op = ParallelBeamCT(10, angles=[0.0, 17.0, 45.0, 120.0], detector_offset=-1.3)
    matrix = explicit_matrix(op.A, (1, 10, 10))
    assert float(matrix.min()) >= 0.0
    exact = float(torch.linalg.matrix_norm(matrix, ord=2))
    assert exact <= op.norm() <= exact * (1 + 1e-5)
    assert relative_adjoint_error(op, torch.randn(2, 3, 10, 10)) < 1e-5
    assert op.geometry()["detector_offset"] == -1.3 and "detector_offset" not in ParallelBeamCT(10, angles=4).geometry()
    n = 64
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64) - (n - 1) / 2
    disc = torch.from_numpy(((rows - 3) ** 2 + (cols + 5) ** 2 <= (0.3 * n) ** 2).astype(np.float64))[None, None]
    errors = []
    for offset in (0.0, 1.3):
        shifted = ParallelBeamCT(n, angles=180, detector_offset=offset)
        errors.append(float((shifted.fbp(shifted.A(disc)) - disc).abs().mean()))
    assert errors[1] < 1.1 * errors[0], errors
    with pytest.raises(ValueError, match="detector_offset shifts the full detector's bins"):
        ParallelBeamCT(16, angles=4, detector="circle", detector_offset=1.0)
    with pytest.raises(ValueError, match="detector_offset must be a finite number of cells"):
        ParallelBeamCT(16, angles=4, detector_offset=float("nan"))


@pytest.mark.parametrize("build", [lambda: ParallelBeamCT(9, angles=5), lambda: FanBeamCT(9, angles=6)])
def test_the_operator_under_torch_func_transforms(build):
    """vmap over images and jacrev (the Jacobian of A is its matrix) apply, as they did to deepinv's."""
    op = build()
    x = torch.rand(3, 1, 1, 9, 9, dtype=torch.float64)
    mapped = torch.func.vmap(op.A)(x)
    torch.testing.assert_close(mapped, torch.stack([op.A(image) for image in x]))
    y = torch.rand_like(op.A(x[0]))
    torch.testing.assert_close(torch.func.vmap(op.A_adjoint)(y[None].expand(2, -1, -1, -1, -1)),
                               op.A_adjoint(y)[None].expand(2, -1, -1, -1, -1))
    jacobian = torch.func.jacrev(op.A)(x[0]).reshape(op.A(x[0]).numel(), 81)
    torch.testing.assert_close(jacobian @ x[1].flatten(), op.A(x[1]).flatten())
