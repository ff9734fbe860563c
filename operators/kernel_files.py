"""Reading raw kernel arrays from ``.npy``, image and MATLAB files (numpy only at import time).

:func:`read_kernel_array` returns the 2-D array exactly as stored (MATLAB orientation for ``.mat``
files); validation and normalisation are :func:`pnp_stable.operators.kernels.validate_kernel`'s job.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["read_kernel_array", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".pgm")
_PREFERRED_MAT_VARIABLES = ("kernels", "kernel", "k", "K")


def read_kernel_array(path: Path, index: int | None, variable: str | None) -> np.ndarray:
    """The ``index``-th (0-based) kernel stored in ``path`` as a 2-D float64 array.

    ``variable`` names the MATLAB variable of a ``.mat`` file (the kernel spec ``PATH:VARIABLE``).
    Raises ``ValueError`` for a missing file, an unsupported suffix, an unreadable file, a missing
    or ambiguous variable, a variable given for a file that is not ``.mat``, a file holding several
    kernels without ``index``, and an index out of range.
    """
    if not path.is_file():
        raise ValueError(f"kernel file {path} does not exist")
    suffix = path.suffix.lower()
    if variable is not None and suffix != ".mat":
        raise ValueError(f"{path} is not a MATLAB .mat file; only .mat files have variables (got {variable!r})")
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read kernel file {path}: {exc}") from None
        except EOFError:  # an empty file; click would take an EOFError for its own "aborted"
            raise ValueError(f"cannot read kernel file {path}: it is empty") from None
        return _select(array, index, path, stack_axis=0)
    if suffix in IMAGE_SUFFIXES:
        if index not in (None, 0):
            raise ValueError(f"kernel image {path} holds one kernel; index {index} is out of range")
        return _read_image(path)
    if suffix == ".mat":
        return _read_mat(path, index, variable)
    raise ValueError(
        f"unsupported kernel file type {path.suffix!r} for {path}; use .npy, .mat or one of {', '.join(IMAGE_SUFFIXES)}"
    )


def _check_real(array: np.ndarray, path: Path) -> None:
    """Refuse complex data (casting it to float drops the imaginary part, with a numpy warning) and
    text or other non-numeric data (the cast fails with numpy's message, which names no file), as
    images are refused."""
    if array.dtype == object:
        return  # a cell array of kernels: each cell is checked when picked
    if np.iscomplexobj(array) or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"kernel file {path} holds {array.dtype} data; expected real numbers")


def _select(array: np.ndarray, index: int | None, path: Path, stack_axis: int) -> np.ndarray:
    """Pick one 2-D kernel from a 2-D array or a 3-D stack along ``stack_axis``."""
    _check_real(array, path)
    if array.dtype == object:
        return _select_from_cells(list(array.reshape(-1)), index, path)
    if array.ndim == 2:
        if index not in (None, 0):
            raise ValueError(f"{path} holds one kernel; index {index} is out of range")
        return np.asarray(array, dtype=np.float64)
    if array.ndim == 3:
        count = array.shape[stack_axis]
        _check_index(index, count, path)
        return np.asarray(np.take(array, index, axis=stack_axis), dtype=np.float64)
    raise ValueError(f"{path} holds an array of shape {array.shape}; expected a 2-D kernel or a 3-D stack")


def _check_index(index: int | None, count: int, path: Path) -> None:
    if index is None:
        if count == 1:
            return
        raise ValueError(f"{path} holds {count} kernels; choose one with index 0..{count - 1} (PATH#INDEX)")
    if not 0 <= index < count:
        raise ValueError(f"kernel index {index} is out of range for {path}, which holds {count} kernels (0..{count - 1})")


def _select_from_cells(cells: list, index: int | None, path: Path) -> np.ndarray:
    _check_index(index, len(cells), path)
    cell = np.asarray(cells[0 if index is None else index])
    if cell.dtype == object or cell.ndim != 2:
        raise ValueError(f"entry {index} of {path} is not a 2-D numeric kernel (shape {cell.shape})")
    _check_real(cell, path)
    return np.asarray(cell, dtype=np.float64)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"cannot read kernel image {path}: {exc}") from None
    except Image.DecompressionBombError:  # not an OSError: it would escape as a traceback
        raise ValueError(f"kernel image {path} is too large to read (over Pillow's image size limit); "
                         "a kernel is at most a few hundred pixels wide") from None
    if array.ndim == 3:
        channels = array[..., :3] if array.shape[-1] >= 3 else array[..., :1]
        if not np.all(channels == channels[..., :1]):
            raise ValueError(f"kernel image {path} is colour ({mode}); kernels must be grayscale")
        array = channels[..., 0]
    return np.asarray(array, dtype=np.float64)


def _pick_variable(names: list[str], variable: str | None, path: Path, index: int | None) -> str:
    if variable is not None:
        if variable not in names:
            raise ValueError(f"{path} has no variable {variable!r}; it holds {', '.join(names) or 'nothing'}")
        return variable
    for preferred in _PREFERRED_MAT_VARIABLES:
        if preferred in names:
            return preferred
    if len(names) == 1:
        return names[0]
    if not names:
        raise ValueError(f"{path} holds no variables")
    # the kernel-spec syntax PATH:VARIABLE[#INDEX] (pnp_stable.operators.kernels.parse_kernel_spec)
    example = f"{path}:{names[0]}" + ("" if index is None else f"#{index}")
    raise ValueError(f"{path} holds several variables ({', '.join(names)}); choose one as PATH:VARIABLE, e.g. {example}")


def _read_mat(path: Path, index: int | None, variable: str | None) -> np.ndarray:
    import h5py  # a dependency of deepinv; v7.3 files are HDF5 with a 512-byte MATLAB header

    if h5py.is_hdf5(path):
        return _read_mat_v73(path, index, variable)
    import scipy.io

    try:
        contents = scipy.io.loadmat(path)
    except (OSError, ValueError, NotImplementedError, TypeError, scipy.io.matlab.MatReadError) as exc:
        raise ValueError(f"cannot read MATLAB file {path}: {exc}") from None
    names = [k for k in contents if not k.startswith("__")]
    array = contents[_pick_variable(names, variable, path, index)]
    if array.dtype == object:
        # MATLAB's linear order is column-major
        return _select_from_cells(list(array.reshape(-1, order="F")), index, path)
    return _select(array, index, path, stack_axis=2)


def _read_mat_v73(path: Path, index: int | None, variable: str | None) -> np.ndarray:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names = [k for k in f.keys() if not k.startswith("#")]
            node = f[_pick_variable(names, variable, path, index)]
            if not isinstance(node, h5py.Dataset):
                raise ValueError(f"variable in {path} is a MATLAB struct, not a kernel or a cell array")
            data = node[()]
            if data.dtype == h5py.ref_dtype or data.dtype == object:
                # h5py stores MATLAB arrays transposed: its C order is MATLAB's column-major order
                refs = list(np.asarray(data).reshape(-1))
                _check_index(index, len(refs), path)
                target = f[refs[0 if index is None else index]]
                if not isinstance(target, h5py.Dataset):
                    raise ValueError(f"entry {index} of {path} is not a numeric kernel")
                return _as_matlab_2d(target[()], path)
            return _select(np.asarray(data).T, index, path, stack_axis=2)
    except OSError as exc:
        raise ValueError(f"cannot read MATLAB v7.3 file {path}: {exc}") from None


def _as_matlab_2d(data: np.ndarray, path: Path) -> np.ndarray:
    array = np.asarray(data)
    if array.dtype.kind not in "fiub" or array.ndim != 2:
        raise ValueError(f"{path}: a cell entry is not a 2-D numeric kernel (dtype {array.dtype}, shape {array.shape})")
    return np.asarray(array.T, dtype=np.float64)
