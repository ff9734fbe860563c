"""Kernels: synthetic families, file formats (incl. MATLAB v7.3 written here with h5py), specs."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from pnp_stable.operators import kernels as K


def _no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


# --- synthetic kernels ------------------------------------------------------------------------
def test_gaussian_matches_formula_and_is_normalised():
    k = _no_warnings(K.gaussian, 1.6, 25)
    r = np.arange(25) - 12
    expected = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.6**2))
    np.testing.assert_allclose(k, expected / expected.sum(), rtol=1e-12)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.unravel_index(k.argmax(), k.shape) == (12, 12)
    np.testing.assert_allclose(k, k.T)
    assert K.gaussian(1.6).shape == (15, 15)  # default 2 ceil(4 sigma) + 1


def test_box_disk_are_uniform_and_radial():
    b = K.box(9)
    assert b.shape == (9, 9) and np.allclose(b, 1 / 81)
    d = K.disk(3)
    assert d.shape == (7, 7) and d.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(d, d.T, atol=1e-15)
    np.testing.assert_allclose(d, d[::-1, ::-1], atol=1e-15)
    # interior pixels fully covered, corners outside the disk
    assert d[3, 3] == pytest.approx(d.max()) and d[0, 0] == 0
    # the covered area approximates pi r^2 pixels
    assert (d / d.max()).sum() == pytest.approx(np.pi * 9, rel=0.02)
    tiny = K.disk(0.2)
    assert tiny[tiny.shape[0] // 2, tiny.shape[1] // 2] == pytest.approx(1.0)


def test_motion_direction():
    horizontal = K.motion(9, 0)
    assert horizontal.shape == (9, 9)
    assert horizontal[4].sum() == pytest.approx(1.0)  # all mass on the centre row
    vertical = K.motion(9, 90)
    assert vertical[:, 4].sum() == pytest.approx(1.0, abs=1e-12)
    diagonal = K.motion(9, 45)
    # counter-clockwise from the horizontal: up-right is (row small, column large)
    assert diagonal.shape == (7, 7)
    assert diagonal[0, 6] > 0 and diagonal[6, 0] > 0 and diagonal[0, 0] == 0 and diagonal[6, 6] == 0
    assert K.motion(1, 30).max() == pytest.approx(1.0)


def test_motion_random_is_deterministic_and_valid():
    a, b, c = K.motion_random(21, seed=3), K.motion_random(21, seed=3), K.motion_random(21, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (21, 21) and a.min() >= 0 and a.sum() == pytest.approx(1.0)
    assert (a > 0).sum() > 10  # a path, not a point


# --- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones((3, 3, 3)), "2-D"),
        (np.zeros((0, 3)), "empty"),
        (np.array([[1.0, np.nan], [1, 1]]), "NaN"),
        (np.array([[1.0, -0.5], [1, 1]]), "negative"),
        (np.zeros((3, 3)), "sums to"),
        ("abc", "numeric"),
    ],
)
def test_validate_kernel_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        K.validate_kernel(bad)


def test_validate_kernel_renormalises_with_warning_and_allows_negative_when_told():
    with pytest.warns(K.KernelNormalizationWarning, match="summed to 4"):
        k = K.validate_kernel(np.ones((2, 2)))
    assert k.sum() == pytest.approx(1.0)
    signed = _no_warnings(K.validate_kernel, np.array([[-0.25, 1.25]]), allow_negative=True)
    assert signed.min() < 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: K.gaussian(0), "sigma"),
        (lambda: K.gaussian(float("nan")), "sigma"),
        (lambda: K.gaussian(1, size=0), "size"),
        (lambda: K.gaussian(1, size=2.5), "size"),
        (lambda: K.box(0), "box size"),
        (lambda: K.disk(-1), "radius"),
        (lambda: K.motion(0, 10), "length"),
        (lambda: K.motion(5, float("inf")), "angle"),
        (lambda: K.motion_random(2, 0), "at least 3"),
        (lambda: K.motion_random(9, -1), "seed"),
    ],
)
def test_constructor_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- files ------------------------------------------------------------------------------------
ASYMMETRIC = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 5.0]]) / 8.0  # orientation probe


def test_npy_single_and_stack(tmp_path):
    np.save(tmp_path / "k.npy", ASYMMETRIC)
    np.testing.assert_allclose(_no_warnings(K.from_file, tmp_path / "k.npy"), ASYMMETRIC)
    np.save(tmp_path / "stack.npy", np.stack([ASYMMETRIC, ASYMMETRIC.T]))
    np.testing.assert_allclose(K.from_file(tmp_path / "stack.npy", index=1), ASYMMETRIC.T)
    with pytest.raises(ValueError, match="holds 2 kernels"):
        K.from_file(tmp_path / "stack.npy")
    with pytest.raises(ValueError, match="out of range"):
        K.from_file(tmp_path / "stack.npy", index=2)
    with pytest.raises(ValueError, match="out of range"):
        K.from_file(tmp_path / "k.npy", index=1)


def test_png_is_normalised_with_warning_and_colour_rejected(tmp_path):
    from PIL import Image

    pixels = (ASYMMETRIC * 8 * 40).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(tmp_path / "k.png")
    with pytest.warns(K.KernelNormalizationWarning):
        k = K.from_file(tmp_path / "k.png")
    np.testing.assert_allclose(k, ASYMMETRIC, atol=1e-12)
    rgb = np.zeros((3, 3, 3), dtype=np.uint8)
    rgb[1, 1] = (255, 0, 0)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "c.png")
    with pytest.raises(ValueError, match="grayscale"):
        K.from_file(tmp_path / "c.png")


def test_float_tiff(tmp_path):
    from PIL import Image

    Image.fromarray(ASYMMETRIC.astype(np.float32), mode="F").save(tmp_path / "k.tif")
    np.testing.assert_allclose(K.from_file(tmp_path / "k.tif"), ASYMMETRIC, atol=1e-7)


def test_mat_v5_cell_and_array(tmp_path):
    import scipy.io

    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = ASYMMETRIC, ASYMMETRIC.T
    scipy.io.savemat(tmp_path / "cells.mat", {"kernels": cell})
    np.testing.assert_allclose(K.from_file(tmp_path / "cells.mat", index=0), ASYMMETRIC)
    np.testing.assert_allclose(K.from_file(tmp_path / "cells.mat", index=1), ASYMMETRIC.T)
    scipy.io.savemat(tmp_path / "one.mat", {"blur": ASYMMETRIC})
    np.testing.assert_allclose(K.from_file(tmp_path / "one.mat"), ASYMMETRIC)
    scipy.io.savemat(tmp_path / "two.mat", {"a": ASYMMETRIC, "b": ASYMMETRIC})
    with pytest.raises(ValueError, match="several variables"):
        K.from_file(tmp_path / "two.mat")
    np.testing.assert_allclose(K.from_file(tmp_path / "two.mat", variable="b"), ASYMMETRIC)
    with pytest.raises(ValueError, match="no variable"):
        K.from_file(tmp_path / "two.mat", variable="c")


def _write_matlab_v73_cell(path, kernels):
    """A file laid out like MATLAB's ``save -v7.3`` of a 1 x n cell ``kernels``: HDF5 with a
    512-byte MATLAB header, each array stored transposed, the cell as an (n, 1) reference array."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        refs_group = f.create_group("#refs#")
        refs = []
        for i, k in enumerate(kernels):
            d = refs_group.create_dataset(chr(ord("a") + i), data=np.asarray(k).T)
            d.attrs["MATLAB_class"] = np.bytes_(b"double")
            refs.append(d.ref)
        cell = f.create_dataset("kernels", data=np.array(refs, dtype=h5py.ref_dtype).reshape(len(refs), 1))
        cell.attrs["MATLAB_class"] = np.bytes_(b"cell")
    with open(path, "r+b") as raw:
        raw.write(b"MATLAB 7.3 MAT-file, written by the pnp-stable test suite".ljust(128, b" "))


def test_mat_v73_cell_restores_matlab_orientation(tmp_path):
    path = tmp_path / "levin_like.mat"
    wide = np.zeros((3, 5))
    wide[0, 4] = 1.0
    _write_matlab_v73_cell(path, [ASYMMETRIC, wide])
    np.testing.assert_allclose(K.from_file(path, index=0), ASYMMETRIC)
    np.testing.assert_allclose(K.from_file(path, index=1), wide)
    np.testing.assert_allclose(K.parse_kernel_spec(f"{path}#1"), wide)
    with pytest.raises(ValueError, match="holds 2 kernels"):
        K.from_file(path)
    with pytest.raises(ValueError, match="out of range"):
        K.parse_kernel_spec(f"{path}#2")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("k.txt", b"1 2 3", "unsupported kernel file type"),
        ("k.npy", b"not numpy", "cannot read"),
        ("k.png", b"not a png", "cannot read"),
        ("k.mat", b"not matlab", "cannot read"),
    ],
)
def test_unreadable_files(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        K.from_file(tmp_path / name)


def test_missing_file():
    with pytest.raises(ValueError, match="does not exist"):
        K.from_file("/nonexistent/kernel.npy")


# --- specs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, expected",
    [
        ("gauss", lambda: K.gaussian(1.6)),
        ("Gauss:1.6", lambda: K.gaussian(1.6)),
        ("gauss:2,9", lambda: K.gaussian(2, 9)),
        ("box", lambda: K.box(9)),
        ("box:5", lambda: K.box(5)),
        ("uniform:5", lambda: K.box(5)),
        ("disk:3", lambda: K.disk(3)),
        ("motion:15,30", lambda: K.motion(15, 30)),
        ("motion-random:7", lambda: K.motion_random(25, 7)),
        ("motion-random:7,15", lambda: K.motion_random(15, 7)),
        (" box:3 ", lambda: K.box(3)),
    ],
)
def test_parse_named_specs(spec, expected):
    np.testing.assert_array_equal(K.parse_kernel_spec(spec), expected())


def test_parse_path_specs(tmp_path):
    np.save(tmp_path / "k.npy", ASYMMETRIC)
    np.save(tmp_path / "s.npy", np.stack([ASYMMETRIC, ASYMMETRIC.T]))
    np.testing.assert_allclose(K.parse_kernel_spec(str(tmp_path / "k.npy")), ASYMMETRIC)
    np.testing.assert_allclose(K.parse_kernel_spec(f"{tmp_path / 's.npy'}#1"), ASYMMETRIC.T)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty kernel spec"),
        ("   ", "empty kernel spec"),
        ("gauss:", "missing parameters"),
        ("gauss:abc", "not a comma-separated list"),
        ("gauss:1,2,3", "expected 0 to 2"),
        ("gauss:-1", "sigma"),
        ("box:2.5", "must be an integer"),
        ("box:-3", "box size"),
        ("disk", "expected 1"),
        ("disk:0", "radius"),
        ("motion:15", "expected 2"),
        ("motion:0,10", "length"),
        ("motion-random:1.5", "seed must be an integer"),
        ("motion-random:1,2", "at least 3"),
        ("wobble:3", "neither a kernel name"),
        ("no_such_file.npy", "neither a kernel name"),
    ],
)
def test_parse_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        K.parse_kernel_spec(spec)


def test_parse_index_errors(tmp_path):
    np.save(tmp_path / "s.npy", np.stack([ASYMMETRIC, ASYMMETRIC.T]))
    with pytest.raises(ValueError, match="not an integer"):
        K.parse_kernel_spec(f"{tmp_path / 's.npy'}#one")
    with pytest.raises(ValueError, match="missing index"):
        K.parse_kernel_spec(f"{tmp_path / 's.npy'}#")
    with pytest.raises(ValueError, match="out of range"):
        K.parse_kernel_spec(f"{tmp_path / 's.npy'}#5")
    with pytest.raises(ValueError, match="out of range"):
        K.parse_kernel_spec(f"{tmp_path / 's.npy'}#-1")
    with pytest.raises(ValueError, match="not a file"):
        K.parse_kernel_spec(str(tmp_path))
    with pytest.raises(ValueError, match="must be a string"):
        K.parse_kernel_spec(3)  # type: ignore[arg-type]


def test_kernels_module_imports_neither_torch_nor_deepinv():
    code = (
        "import sys; from pnp_stable.operators import kernels; kernels.parse_kernel_spec('gauss'); "
        "bad = [m for m in ('torch', 'deepinv', 'h5py', 'scipy') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- user-facing messages, MATLAB variables in specs, one warning per kernel ------------------
def test_negative_kernel_message_states_the_rule_without_python_keywords(tmp_path):
    sharpen = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], float)
    np.save(tmp_path / "k_neg.npy", sharpen)
    with pytest.raises(ValueError, match=r"has negative entries \(min -1\); a blur kernel must be non-negative") as info:
        K.parse_kernel_spec(str(tmp_path / "k_neg.npy"))
    assert "allow_negative" not in str(info.value) and "=" not in str(info.value)
    np.testing.assert_allclose(K.from_file(tmp_path / "k_neg.npy", allow_negative=True), sharpen)


def test_zero_sum_kernel_with_negative_entries_names_the_sum(tmp_path):
    laplacian = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], float)
    np.save(tmp_path / "k_zero.npy", laplacian)
    with pytest.raises(ValueError, match="sums to 0 and has negative entries") as info:
        K.parse_kernel_spec(str(tmp_path / "k_zero.npy"))
    assert "positive sum" in str(info.value) and "allow_negative" not in str(info.value)
    with pytest.raises(ValueError, match="sums to 0; a blur kernel must have a positive sum"):
        K.validate_kernel(laplacian, allow_negative=True)  # signed is allowed, a zero sum is not


def _two_variables(tmp_path):
    import scipy.io

    stack = np.stack([ASYMMETRIC, ASYMMETRIC.T, 2 * ASYMMETRIC], axis=2)  # MATLAB (h, w, n)
    path = tmp_path / "kers2.mat"
    scipy.io.savemat(path, {"a": ASYMMETRIC.T, "b": stack})
    return path


def test_mat_variable_spec_selects_variable_and_index(tmp_path):
    path = _two_variables(tmp_path)
    np.testing.assert_allclose(K.parse_kernel_spec(f"{path}:a"), ASYMMETRIC.T)
    np.testing.assert_allclose(K.parse_kernel_spec(f"{path}:b#0"), ASYMMETRIC)
    np.testing.assert_allclose(K.parse_kernel_spec(f"{path}:b#1"), ASYMMETRIC.T)
    with pytest.warns(K.KernelNormalizationWarning, match="summed to 2"):
        np.testing.assert_allclose(K.parse_kernel_spec(f"{path}:b#2"), ASYMMETRIC)
    with pytest.raises(ValueError, match="holds 3 kernels"):
        K.parse_kernel_spec(f"{path}:b")
    with pytest.raises(ValueError, match="out of range"):
        K.parse_kernel_spec(f"{path}:b#3")


def test_ambiguous_mat_file_suggests_the_variable_spec(tmp_path):
    path = _two_variables(tmp_path)
    with pytest.raises(ValueError, match="several variables") as info:
        K.parse_kernel_spec(str(path))
    assert f"{path}:a" in str(info.value) and "variable=" not in str(info.value)
    with pytest.raises(ValueError, match="several variables") as info:
        K.parse_kernel_spec(f"{path}#1")
    assert f"{path}:a#1" in str(info.value)
    # the suggested spec works
    np.testing.assert_allclose(K.parse_kernel_spec(f"{path}:b#1"), ASYMMETRIC.T)


def test_mat_variable_spec_errors(tmp_path):
    path = _two_variables(tmp_path)
    with pytest.raises(ValueError, match="no variable 'c'; it holds a, b"):
        K.parse_kernel_spec(f"{path}:c")
    with pytest.raises(ValueError, match="missing MATLAB variable name"):
        K.parse_kernel_spec(f"{path}:")
    with pytest.raises(ValueError, match="neither a kernel name"):
        K.parse_kernel_spec(f"{tmp_path / 'missing.mat'}:a")
    np.save(tmp_path / "k.npy", ASYMMETRIC)
    with pytest.raises(ValueError, match="not a .mat file"):
        K.parse_kernel_spec(f"{tmp_path / 'k.npy'}:a")
    with pytest.raises(ValueError, match="only .mat files have variables"):
        K.from_file(tmp_path / "k.npy", variable="a")


def test_file_names_with_colon_or_hash_are_read_as_paths(tmp_path):
    np.save(tmp_path / "odd:name.npy", ASYMMETRIC)
    np.save(tmp_path / "odd#1.npy", ASYMMETRIC.T)
    np.testing.assert_allclose(K.parse_kernel_spec(str(tmp_path / "odd:name.npy")), ASYMMETRIC)
    np.testing.assert_allclose(K.parse_kernel_spec(str(tmp_path / "odd#1.npy")), ASYMMETRIC.T)


def test_cli_prints_the_renormalisation_warning_once(tmp_path):
    from click.testing import CliRunner
    from PIL import Image
    from skimage import data

    from pnp_stable.cli.main import main

    Image.fromarray(data.camera()[200:232, 220:252]).save(tmp_path / "img.png")
    np.save(tmp_path / "k_good.npy", np.ones((5, 5)))
    args = ["deblur", str(tmp_path / "img.png"), "--kernel", str(tmp_path / "k_good.npy"), "--max-iter", "1",
            "--out", str(tmp_path / "out.png")]
    result = CliRunner().invoke(main, args)  # the command checks the spec, then builds the operator from it
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "renormalised" in line]
    assert lines == ["warning: kernel from k_good.npy summed to 25; renormalised to sum 1"], result.output
    result = CliRunner().invoke(main, [*args, "--quiet"])  # a note: --quiet leaves only the summary
    assert result.exit_code == 0 and "renormalised" not in result.output, result.output
