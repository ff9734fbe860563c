"""Image files in and out: PNG, JPG, TIF (8/16-bit) and ``.npy``, gray or RGB.

Reading returns float32 arrays in [0, 1] (``.npy`` values are taken as they are) with the source
bit depth, so results can be written back in the input's depth. Writing is atomic (temporary file
in the target folder, then ``os.replace``) and refuses to overwrite the input.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pnp_stable.cli.orientation import EXIF_ORIENTATION, displayed
from pnp_stable.fileio import atomic_output, read_npy

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")


@dataclass
class LoadedImage:
    data: np.ndarray  # H x W (gray) or H x W x 3 (RGB), float32
    bit_depth: int | None  # 8, 16, or None for float data (.npy / float TIFF)
    path: Path | None
    notes: tuple[str, ...] = ()
    alpha: np.ndarray | None = None  # H x W in [0, 1], when the file had an alpha channel (dropped from data)

    @property
    def is_rgb(self) -> bool:
        return self.data.ndim == 3


def _check_finite(arr: np.ndarray, path: Path) -> None:
    if not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "infinite values"
        raise ValueError(f"{path.name} contains {bad}")


def _integer_array_to_unit(arr: np.ndarray, path: Path, notes: list[str]) -> np.ndarray:
    """An integer ``.npy`` holds 8- or 16-bit samples, as an image file would: scale it to [0, 1] by
    the smallest of those ranges that holds it (a note says which)."""
    low, high = int(arr.min(initial=0)), int(arr.max(initial=0))
    if low < 0 or high > 65535:
        raise ValueError(f"{path.name} holds integers in [{low}, {high}]; expected 8- or 16-bit samples "
                         "(0..255 or 0..65535) or floats")
    # the dtype says the scale where it can (a dark 16-bit image's samples may all be <= 255); other
    # integer types (int32, int64 ...) go by the smallest range that holds them
    if arr.dtype in (np.uint8, np.uint16):
        peak = 255 if arr.dtype == np.uint8 else 65535
    else:
        peak = 255 if high <= 255 else 65535
    if arr.dtype != np.bool_ and (high > 1 or arr.dtype == np.uint16):
        notes.append(f"integer samples scaled from [0, {peak}] to [0, 1] ({arr.dtype}); the output is float")
        return arr.astype(np.float32) / peak
    return arr.astype(np.float32)


def read_image(path: str | os.PathLike, allow_nonfinite: bool = False) -> LoadedImage:
    """Read ``path`` as float32; gray (H x W) or RGB (H x W x 3). Image files and integer ``.npy``
    arrays are scaled to [0, 1]; float data (``.npy``, float TIFF) keep their values (a sinogram's
    scale is its own; :func:`pnp_stable.restore.check_unit_range` checks images).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an unreadable file or
    an unsupported mode (e.g. CMYK, more than 4 channels, NaN in a ``.npy`` or a float TIFF, unless
    ``allow_nonfinite``: an inpainting's missing pixels may be marked so).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    if not path.is_file():  # a FIFO or a device: reading would wait forever
        raise ValueError(f"{path.name} is not a regular file (a pipe or a device?); give an image file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"unsupported image type {suffix or '(none)'} for {path.name}; use PNG, JPG, TIF or .npy")
    notes: list[str] = []
    if suffix == ".npy":
        arr = read_npy(path)
        if (not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_) or np.iscomplexobj(arr):
            raise ValueError(f"{path.name} holds {arr.dtype} data; expected real numbers")
        if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            arr = _integer_array_to_unit(arr, path, notes)
        arr = arr.astype(np.float32)
        depth = None
    else:
        from PIL import Image

        with warnings.catch_warnings():
            # a photograph between Pillow's two limits (89 and 179 Mpixel) is legitimate; above, the
            # error is refused in a sentence (_read_raster)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            arr, depth = _read_raster(path, notes)
        if depth == 16 and arr.size and 0 < float(arr.max()) <= _TWELVE_BIT_TOP:
            # a camera's 12-bit samples in a 16-bit file: read on the 16-bit scale, the image is dark
            notes.append(f"{path.name}'s values are at most {round(float(arr.max()) * 65535)} of 65535 (12-bit data "
                         "in a 16-bit file?): they are read on the 16-bit scale, so the image is dark; if 4095 is "
                         "its white, rescale it first (a CT sinogram needs nothing: its scale is found)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    alpha = None
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha = np.ascontiguousarray(arr[:, :, -1], dtype=np.float32)
        arr = arr[:, :, :3] if arr.shape[2] == 4 else arr[:, :, 0]
        notes.append("alpha channel ignored")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"{path.name} has shape {arr.shape}; expected a gray (H x W) or RGB (H x W x 3) image")
    if not allow_nonfinite:
        _check_finite(arr, path)
    if min(arr.shape[:2]) < 8:
        raise ValueError(f"{path.name} is too small ({arr.shape[0]} x {arr.shape[1]}); need at least 8 x 8 pixels")
    return LoadedImage(np.ascontiguousarray(arr, dtype=np.float32), depth, path, tuple(notes), alpha)


def _regular_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path, when it names a regular file: FileNotFoundError when missing, ValueError for a
    folder, a pipe or a device (reading one would fail, or wait forever)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    if not path.is_file():
        raise ValueError(f"{path.name} is not a regular file")
    return path


def read_counts(path: str | os.PathLike) -> np.ndarray:
    """Detector readings as stored, as float64: a ``.npy`` array of any real type (1-D, 2-D, or 2-D
    with leading axes of length 1), or a gray image file's samples unscaled (8- and 16-bit integers
    as the integers they are, a float TIFF as is), of any size: raw CT data, whose ratios matter,
    and whose gain is given in the file's units. FileNotFoundError, or ValueError naming the file."""
    return _counts_and_depth(path)[0]


def _counts_and_depth(path: str | os.PathLike) -> tuple[np.ndarray, int | None]:
    """:func:`read_counts`'s values, and the bit depth of the integer samples an 8- or 16-bit PNG or
    JPEG stored them in (None for a ``.npy`` or a TIFF, whose values keep their own type)."""
    path = _regular_file(path)
    suffix = path.suffix.lower()
    depth = None
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"unsupported file type {suffix or '(none)'} for {path.name}; use .npy, TIF or PNG")
    if suffix == ".npy":
        arr = read_npy(path)
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"{path.name} holds {arr.dtype} data; expected real numbers")
        while arr.ndim > 2 and arr.shape[0] == 1:
            arr = arr[0]
        values = arr.astype(np.float64)
    else:
        stored = None
        if suffix in (".tif", ".tiff"):  # any sample type as stored (a photon counter's 32-bit integers)
            from pnp_stable.cli.tiff import read_tiff

            stored = read_tiff(path, [])
        if stored is not None:
            if not np.issubdtype(stored.dtype, np.number) or np.iscomplexobj(stored):
                raise ValueError(f"{path.name} holds {stored.dtype} samples; expected real numbers")
            values = stored.astype(np.float64)
        else:
            normalised, depth = _read_raster(path, [])
            scale = {8: 255.0, 16: 65535.0}.get(depth, 1.0)
            values = normalised.astype(np.float64) * scale
            values = np.rint(values) if scale != 1.0 else values
        if values.ndim == 3 and values.shape[2] == 1:
            values = values[:, :, 0]
        if values.ndim != 2:
            raise ValueError(f"{path.name} has shape {values.shape}; detector readings are one gray channel")
    if values.ndim > 2 or values.size == 0:
        raise ValueError(f"{path.name} has shape {values.shape}; expected detector readings (bins, or bins x views)")
    _check_finite(values, path)
    return values, depth if depth in (8, 16) else None


def read_raw_sinogram(path: str | os.PathLike) -> LoadedImage:
    """A raw sinogram file (``n_detectors x n_angles`` readings, :func:`read_counts`) as an image
    the command line's tasks take: its readings unscaled, float32 (exact up to 2^24)."""
    values = read_counts(path)
    if values.ndim != 2:
        raise ValueError(f"{Path(path).name} has shape {values.shape}; a raw sinogram is n_detectors x n_angles")
    return LoadedImage(np.ascontiguousarray(values, dtype=np.float32), None, Path(path), (), None)


def frame_files(folder: Path, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """The image files of ``folder`` (less ``exclude``) in natural order of their names: ``p_2`` before
    ``p_10``, as a scanner numbers its projections."""
    import re

    skipped = {p.resolve() for p in exclude}
    files = [p for p in list_images(folder) if p.resolve() not in skipped]
    if not files:
        raise ValueError(f"no frames in {folder} (its images are the other inputs)")
    lossy = [p.name for p in files if p.suffix.lower() in (".jpg", ".jpeg")]
    if lossy:
        raise ValueError(f"{lossy[0]} is a JPEG, whose compression alters the readings: frames are TIFF, PNG or .npy")
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t.lower() for t in re.split(r"([0-9]+)", p.name)])


def frame_order_doubt(files: list[Path]) -> str | None:
    """Why the order of ``files`` (as :func:`frame_files` sorts them) may not be their angles', or None:
    names without a number, numbers that do not run evenly (a frame missing), or names that look like
    signed or decimal angles (``-2``, ``0.5deg``), which the natural order of names misplaces."""
    import re

    names = [p.stem for p in files]
    if any(re.search(r"(^|[^0-9A-Za-z])-[0-9]|[0-9][.,][0-9]", name) for name in names):
        return "some names hold signed or decimal numbers, which the order of names does not follow"
    numbers = [re.findall(r"[0-9]+", name) for name in names]
    if not all(numbers):
        return "some names hold no number"
    last = [int(n[-1]) for n in numbers]
    steps = {b - a for a, b in zip(last, last[1:])}
    if len(steps) > 1 or (steps and steps.pop() <= 0):
        return f"their numbers do not run evenly ({last[0]}, {last[1]}, ... {last[-1]}: a frame missing?)"
    return None


def _png_counts(path: Path) -> np.ndarray:
    """A PNG frame's samples in the integer type they were stored in (8 or 16 bits)."""
    values, depth = _counts_and_depth(path)
    return values.astype({8: np.uint8, 16: np.uint16}[depth]) if depth is not None else values


def _mapped_series(path: Path, series) -> np.ndarray | None:
    """TIFF ``path``'s first series (``series``) memory-mapped read-only (uncompressed, its pages' data
    contiguous in the file, native or not: as stored), or None where tifffile cannot map it
    (compressed, tiled, scattered)."""
    import tifffile

    if getattr(series, "dataoffset", None) is None:
        return None
    try:
        return tifffile.memmap(path, mode="r", series=0)
    except Exception:  # noqa: BLE001 - tifffile refuses what it cannot map with several error types
        return None


def read_stack(path: str | os.PathLike, exclude: tuple[Path, ...] = ()) -> np.ndarray:
    """A stack of detector frames as stored, ``k x rows x cols`` (a 2-D frame as ``1 x rows x cols``):
    a ``.npy`` array of any real type, memory-mapped (only the rows reconstructed are read), a
    multi-page TIFF (one page per frame; any sample type as stored; memory-mapped when uncompressed
    and contiguous, else read whole), or a folder of frames, one per file in the natural order of
    their names (:func:`frame_files`, less ``exclude``; read whole).
    Values unchecked (each row is checked where it is used). FileNotFoundError, or ValueError naming
    the file."""
    if Path(path).is_dir():
        files = frame_files(Path(path), exclude)
        stack = None
        for index, file in enumerate(files):
            try:
                frame = read_stack(file) if file.suffix.lower() in (".npy", ".tif", ".tiff") else \
                    _png_counts(file)[None]
            except ValueError as error:
                message = str(error)
                raise ValueError(message if message.startswith(file.name) else f"{file.name}: {message}") from None
            if frame.shape[0] != 1:
                raise ValueError(f"{file.name} holds {frame.shape[0]} frames; a folder of frames holds one per file")
            if stack is None:
                stack = np.empty((len(files), *frame.shape[1:]), dtype=frame.dtype)
            elif frame.shape[1:] != stack.shape[1:]:
                raise ValueError(f"{file.name} is {frame.shape[1]} x {frame.shape[2]}, the folder's first frame "
                                 f"{stack.shape[1]} x {stack.shape[2]}: frames of one stack have one size")
            elif frame.dtype != stack.dtype:  # an 8-bit frame among 16-bit ones, a float one among integers
                raise ValueError(f"{file.name} stores {frame.dtype} samples, the folder's first frame {stack.dtype}: "
                                 "frames of one stack have one sample type")
            stack[index] = frame[0]
        return stack
    path = _regular_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = read_npy(path, mmap=True)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                first = tif.series[0]
                if first.axes.endswith("S"):  # samples side by side in each pixel: a colour image
                    raise ValueError(f"{path.name} stores {first.shape[-1]} colour samples per pixel; a stack of "
                                     "detector frames is gray pages (or planes)")
                # pages written one by one may each be a series of their own; reduced-resolution pages
                # (thumbnails) are not frames, and a frame of another size is a damaged stack
                parts = []
                for index, series in enumerate(tif.series):
                    if tuple(series.shape[-2:]) == tuple(first.shape[-2:]):
                        parts.append(series)
                    elif not getattr(series.pages[0], "is_reduced", False):
                        raise ValueError(f"{path.name}: image {index + 1} is {series.shape[-2]} x {series.shape[-1]}, "
                                         f"the first {first.shape[-2]} x {first.shape[-1]}: frames of one stack "
                                         "have one size")
                if len(parts) == 1:
                    arr = _mapped_series(path, first)
                    if arr is None:
                        arr = first.asarray()
                else:
                    arr = np.concatenate([p.asarray().reshape(-1, *p.shape[-2:]) for p in parts])
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - tifffile raises many types for foreign or damaged files
            raise ValueError(f"cannot read {path.name} as a TIFF stack ({type(exc).__name__})") from None
    else:
        raise ValueError(f"unsupported file type {suffix or '(none)'} for {path.name}: a stack of detector frames is "
                         "a 3-D .npy or a multi-page TIFF")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{path.name} holds {arr.dtype} data; expected real numbers")
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.size == 0:
        raise ValueError(f"{path.name} has shape {tuple(arr.shape)}; expected frames k x rows x cols (or one 2-D "
                         "frame)")
    return arr


# the largest 12-bit sample on the 16-bit [0, 1] scale (4095 / 65535), with float32 rounding
_TWELVE_BIT_TOP = 4095.5 / 65535


def _read_raster(path: Path, notes: list[str]) -> tuple[np.ndarray, int | None]:
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() in (".tif", ".tiff"):
        from pnp_stable.cli.tiff import read_tiff

        raw = read_tiff(path, notes)
        if raw is not None:
            return _normalise(raw, path)
    if path.suffix.lower() == ".png":
        from pnp_stable.png16 import png16_colour_type, read_rgb16_png

        if png16_colour_type(path) in (2, 4, 6):
            # Pillow reads 16-bit RGB(A) and gray+alpha as 8 bits: decode them here (a gray+alpha
            # image keeps its gray channel at 16 bits; read_image drops the alpha, with its note)
            raw = read_rgb16_png(path)
            try:
                with Image.open(path) as im:  # Pillow still reads the header's EXIF orientation
                    orientation = im.getexif().get(EXIF_ORIENTATION, 1)
            except Image.DecompressionBombError:  # above Pillow's limit, which our decoder does not have
                orientation = 1
                notes.append(f"{path.name} is larger than Pillow reads, so its EXIF orientation (if any) was not "
                             "read: the stored pixels are restored")
            return _normalise(displayed(raw, orientation, path, notes), path)
    try:
        with Image.open(path) as im:
            # (a TIFF reaches here after its stack check: Pillow counts a thumbnail page as a frame)
            if getattr(im, "n_frames", 1) > 1 and path.suffix.lower() not in (".tif", ".tiff"):
                raise ValueError(f"{path.name} holds {im.n_frames} images (pages or frames); one image per file is "
                                 "read: save them as separate files, e.g. in a folder")
            # read after loading: Pillow 13 turns a TIFF by its tag as it loads it, and drops the tag
            im.load()
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
            mode = im.mode
            if mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                raise ValueError(f"{path.name} is a {mode} image; convert it to gray or RGB first")
            elif mode == "1":
                im = im.convert("L")
            raw = np.asarray(im)
            if mode.startswith("I;16") or mode == "I":
                raw = raw.astype(np.uint16) if raw.max(initial=0) <= 65535 and raw.min(initial=0) >= 0 else raw
            raw = displayed(raw, orientation, path, notes)
    except UnidentifiedImageError:
        raise ValueError(f"cannot read {path.name}: not a recognised image file") from None
    except Image.DecompressionBombError:  # not an OSError: it would escape as a traceback
        raise ValueError(f"cannot read {path.name}: it is larger than Pillow's image size limit "
                         f"({Image.MAX_IMAGE_PIXELS * 2} pixels, a guard against decompression bombs); "
                         "crop it or split it into tiles") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path.name}: {exc}") from None
    return _normalise(raw, path)


def _normalise(raw: np.ndarray, path: Path) -> tuple[np.ndarray, int | None]:
    if raw.dtype == np.uint8:
        return raw.astype(np.float32) / 255.0, 8
    if raw.dtype == np.uint16:
        return raw.astype(np.float32) / 65535.0, 16
    if raw.dtype == np.bool_:
        return raw.astype(np.float32), 8
    if np.issubdtype(raw.dtype, np.floating):
        return raw.astype(np.float32), None
    raise ValueError(f"{path.name} has unsupported sample type {raw.dtype}")


def to_depth(arr: np.ndarray, bit_depth: int) -> np.ndarray:
    scale = 255.0 if bit_depth == 8 else 65535.0
    out = np.clip(np.rint(np.clip(arr, 0.0, 1.0) * scale), 0, scale)
    return out.astype(np.uint8 if bit_depth == 8 else np.uint16)


def write_image(path: str | os.PathLike, arr: np.ndarray, bit_depth: int | None = 8,
                protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Write ``arr`` (values in [0, 1]) atomically; ``bit_depth`` None writes float data (.npy/.tif)
    and a 16-bit PNG.

    Refuses to write over any path in ``protect`` (the inputs). JPG is always 8-bit.
    """
    path = Path(path)
    target = path.resolve()
    for p in protect:
        if Path(p).resolve() == target:
            raise ValueError(f"refusing to overwrite the input {path.name}; choose another --out")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"unsupported output type {suffix or '(none)'}; use .png, .jpg, .tif or .npy")
    with atomic_output(path) as tmp:
        if suffix == ".npy":
            np.save(tmp, np.asarray(arr, dtype=np.float32))
        elif suffix in (".tif", ".tiff"):
            import tifffile

            data = np.asarray(arr, dtype=np.float32) if bit_depth is None else to_depth(arr, bit_depth)
            tifffile.imwrite(tmp, data)
        else:
            from PIL import Image

            # float data keep what a PNG can hold of their precision: 16 bits
            depth = 8 if suffix in (".jpg", ".jpeg") else 16 if bit_depth is None else bit_depth
            data = to_depth(arr, depth)
            if depth == 16:
                if data.ndim == 3:  # Pillow cannot write 16-bit RGB PNG
                    from pnp_stable.png16 import write_rgb16_png

                    write_rgb16_png(tmp, data)
                else:
                    Image.fromarray(data).save(tmp, format="PNG")
            else:
                Image.fromarray(data).save(tmp, format="JPEG" if suffix in (".jpg", ".jpeg") else "PNG",
                                           **({"quality": 95} if suffix in (".jpg", ".jpeg") else {}))
    return path


def default_output(input_path: Path | None, suffix_tag: str, out_dir: Path | None = None, ext: str | None = None) -> Path:
    """``<stem>_<tag><ext>`` beside the input (or in ``out_dir``); ``.npy`` inputs keep ``.npy``."""
    if input_path is None:
        base = Path("camera")  # the demo writes into the working folder, and says so as the user would type it
        ext = ext or ".png"
    else:
        base = input_path
        ext = ext or (input_path.suffix if input_path.suffix.lower() in IMAGE_SUFFIXES else ".png")
    folder = out_dir if out_dir is not None else base.parent
    return folder / f"{base.stem}_{suffix_tag}{ext}"


def _is_residual_plot(path: Path) -> bool:
    """Whether ``path`` is a residual plot an earlier run wrote (``--plot`` per image into the folder),
    by the Software text of its PNG (read with the header, not the pixels)."""
    if path.suffix.lower() != ".png":
        return False
    from PIL import Image

    from pnp_stable.solvers.result import PLOT_SOFTWARE

    try:
        with Image.open(path) as im:
            return im.info.get("Software") == PLOT_SOFTWARE
    except Exception:  # noqa: BLE001 - an unreadable file is the reader's to refuse, with its name
        return False


def list_images(folder: Path, outputs_tag: str | None = None) -> list[Path]:
    """Image files directly inside ``folder``, sorted; raises if there are none. With ``outputs_tag``,
    files that are :func:`default_output` of another file there (``X_<tag>.png`` beside ``X.tif``:
    what an earlier run wrote) are left out, so that a rerun or a resumed run does not restore its
    own outputs."""
    # a name starting with "." is hidden: macOS's "._x.png" resource forks are not images
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if outputs_tag is not None:
        produced = {default_output(p, outputs_tag) for p in files}
        files = [p for p in files if p not in produced and not _is_residual_plot(p)]
    if not files:
        unread = unread_images(folder)
        raise ValueError(f"no images (PNG, JPG, TIF, .npy) found in {folder}" + (f"; it holds {unread}" if unread else ""))
    return files


# image types a folder may hold that are not read: named in a note instead of skipped in silence
_OTHER_IMAGE_SUFFIXES = frozenset({".webp", ".bmp", ".gif", ".heic", ".heif", ".avif", ".jp2", ".j2k", ".jxl", ".pgm",
                                   ".ppm", ".pnm", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2",
                                   ".exr", ".hdr", ".dcm", ".fits"})


def unread_images(folder: Path) -> str:
    """A phrase naming the image files in ``folder`` of types the commands do not read (``""`` if none)."""
    skipped = sorted(p.name for p in folder.iterdir()
                     if p.is_file() and p.suffix.lower() in _OTHER_IMAGE_SUFFIXES and not p.name.startswith("."))
    if not skipped:
        return ""
    shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return (f"{len(skipped)} image file{'s' if len(skipped) > 1 else ''} of a type not read (PNG, JPG, TIF and .npy "
            f"are): {shown}; convert them to restore them")
