"""Reading a TIFF file's one image as it is displayed: stacks refused from the metadata, palette
and white-is-zero images converted, CMYK and Lab refused, the orientation tag applied; files whose
compression tifffile cannot decode without ``imagecodecs`` are left to Pillow where it is faithful."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pnp_stable.cli.orientation import displayed

__all__ = ["read_tiff"]

# TIFF photometric interpretations read as they are (gray with black at 0, RGB) or converted (a
# palette's colour map applied, white-is-zero inverted); the others (CMYK, YCbCr, CIE Lab, ...) refused
_MINISWHITE, _MINISBLACK, _RGB, _PALETTE = 0, 1, 2, 3


def read_tiff(path: Path, notes: list[str]) -> np.ndarray | None:
    """A TIFF file's one image as displayed (its samples as stored: integers or floats), or None
    for Pillow to read it: a JPEG-compressed YCbCr TIFF (what scanners and libtiff write; Pillow
    decodes it to RGB), or 8-bit data (16-bit gray) whose compression (LZW, JPEG ...) tifffile
    decodes only with the optional imagecodecs. Stacks are refused from the metadata first, so that Pillow is given
    single images only (a reduced-resolution page, a thumbnail, is not a second image)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = tuple(series.shape)
            axes = _composite_as_samples(series.axes, shape)
            page = tif.pages[0]
            photometric, orientation = int(page.photometric), int(page.tags.valueof(274, 1) or 1)
            bits, samples, compression = int(page.bitspersample), int(page.samplesperpixel), int(page.compression)
            colormap = page.colormap if photometric == _PALETTE else None
            # further images of the same size in series of their own (pages written one by one) are
            # a stack too; reduced-resolution pages (thumbnails, pyramid levels) are not
            size = (page.imagelength, page.imagewidth)
            others = sum(1 for other in tif.series[1:] if (other.pages[0].imagelength,
                                                            other.pages[0].imagewidth) == size)
            _refuse_stack(path, axes, shape, others)
            if photometric == _YCBCR and compression in _JPEG_COMPRESSIONS:
                return None
            if photometric not in (_MINISBLACK, _RGB, _MINISWHITE, _PALETTE):
                name = {5: "CMYK", 6: "YCbCr", 8: "CIE Lab", 9: "ICC Lab", 10: "ITU Lab"}.get(
                    photometric, f"photometric {photometric}")
                raise ValueError(f"{path.name} is a {name} TIFF; convert it to gray or RGB first")
            try:
                raw = series.asarray()
            except ValueError as exc:
                if "imagecodecs" not in str(exc):  # e.g. "<COMPRESSION.LZW: 5> requires the 'imagecodecs' package"
                    raise
                # Pillow decodes 8-bit gray, RGB, palette and white-is-zero data and 16-bit gray, but
                # reads 16-bit colour as 8 bits and leaves a 16-bit white-is-zero image a negative
                if bits <= 8 or (bits == 16 and samples == 1 and photometric == _MINISBLACK):
                    return None
                raise ValueError(f"{path.name}'s compression ({tifffile.COMPRESSION(compression).name}) needs the "
                                 "imagecodecs package for its 16-bit samples: pip install imagecodecs, or save it "
                                 "uncompressed") from None
    except ValueError as exc:
        if str(exc).startswith(path.name):  # ours, already one line naming the file
            raise
        raise ValueError(f"cannot read {path.name} as a TIFF image: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read {path.name} as a TIFF image: {_first_line(exc)}") from None
    kept = "".join(a for a, n in zip(axes, shape) if n > 1 or a in "YX")
    raw = raw.reshape([n for a, n in zip(axes, shape) if n > 1 or a in "YX"])
    if kept == "SYX":
        raw = np.moveaxis(raw, 0, -1)  # planar (C x H x W) TIFF
    if photometric == _PALETTE:
        raw = _apply_colormap(raw, colormap, path, notes)
    elif photometric == _MINISWHITE:
        raw = _inverted(raw, path, notes)
    return displayed(raw, orientation, path, notes)


_YCBCR = 6
_JPEG_COMPRESSIONS = (6, 7)  # old-style and new-style JPEG


def _composite_as_samples(axes: str, shape: tuple[int, ...]) -> str:
    """``axes`` with an ImageJ/OME composite's 3 or 4 channels (``C``) read as RGB(A) samples (``S``)."""
    if "S" not in axes and axes.count("C") == 1 and shape[axes.index("C")] in (3, 4):
        return axes.replace("C", "S")
    return axes


def _refuse_stack(path: Path, axes: str, shape: tuple[int, ...], others: int) -> None:
    """A stack (pages, time points, z-slices ...; ``axes`` as :func:`_composite_as_samples` gives
    them) would otherwise be read as one image: three frames look like a planar RGB image, more of
    them like an unsupported shape."""
    stacked = [n for a, n in zip(axes, shape) if a not in "YXS" and n > 1]
    if stacked or others:
        count = int(np.prod(stacked)) if stacked else 1 + others
        raise ValueError(f"{path.name} holds {count} images (a TIFF stack, axes {axes}{'' if stacked else ', pages'}); "
                         "one image per file is read: save the frames as separate files, e.g. in a folder")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else "") or type(exc).__name__


def _apply_colormap(raw: np.ndarray, colormap: np.ndarray | None, path: Path, notes: list[str]) -> np.ndarray:
    """A palette TIFF's indices (``H x W``) as the RGB colours of its colour map (``3 x 2^bits``,
    16-bit entries: 8-bit colours when every entry is a multiple of 257 or of 256, as 8-bit maps are
    stored)."""
    if colormap is None or raw.ndim != 2 or not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"{path.name} is a palette TIFF without a usable colour map; convert it to RGB first")
    colormap = np.asarray(colormap)
    if int(raw.max(initial=0)) >= colormap.shape[-1]:
        raise ValueError(f"{path.name} is a palette TIFF whose indices exceed its colour map")
    rgb = np.moveaxis(colormap[:, raw], 0, -1)
    notes.append("palette TIFF: its colour map applied")
    # 8-bit colours are stored scaled by 257 (exact) or shifted by 8 bits (Pillow, some libtiff writers)
    for scale in (257, 256):
        if colormap.dtype == np.uint16 and not (colormap % scale).any():
            return (rgb // scale).astype(np.uint8)
    return rgb.astype(np.uint16) if colormap.dtype == np.uint16 else rgb


def _inverted(raw: np.ndarray, path: Path, notes: list[str]) -> np.ndarray:
    """A white-is-zero (MINISWHITE) TIFF's samples with black at 0, as every other image is read."""
    notes.append("white-is-zero TIFF: its values inverted (black at 0)")
    if raw.dtype == np.bool_:
        return ~raw
    if raw.dtype in (np.uint8, np.uint16):
        return np.iinfo(raw.dtype).max - raw
    raise ValueError(f"{path.name} is a white-is-zero TIFF of {raw.dtype} samples; convert it to black-is-zero first")
