"""Strict reader for the idx format of MNIST and Fashion-MNIST (plain or gzip-compressed).

An idx file is a 4-byte magic number ``00 00 TT DD`` (``TT`` the element type, ``DD`` the number
of dimensions), ``DD`` big-endian uint32 sizes, then the elements in C order, big-endian. Every
deviation (wrong magic, unknown type, truncated or over-long data, a corrupt gzip stream) is a
``ValueError`` that names the file and the problem: a silently misread dataset would corrupt
every number computed from it.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_TYPES", "read_idx", "read_idx_bytes"]

# type code -> big-endian numpy dtype (the idx specification of LeCun et al.)
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _decompress(raw: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{name}: corrupt or truncated gzip stream ({exc})") from None


def read_idx_bytes(raw: bytes, name: str = "<bytes>", expect_ndim: int | None = None) -> np.ndarray:
    """Parse the bytes of an idx file (gzip-compressed or not) into a native-endian array.

    Guarantee: the returned array has exactly the shape declared in the header and the data
    section had exactly the declared length; otherwise a ``ValueError`` naming ``name`` is raised.
    Compression is detected from the content (gzip magic), not from the file name.
    """
    if raw[:2] == _GZIP_MAGIC:
        raw = _decompress(raw, name)
    if len(raw) < 4:
        raise ValueError(f"{name}: {len(raw)} bytes is too short for an idx header")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{name}: not an idx file (magic number 0x{raw[:4].hex()} must start with 0000)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_TYPES:
        raise ValueError(f"{name}: unknown idx element type 0x{type_code:02x}")
    if ndim == 0:
        raise ValueError(f"{name}: idx header declares 0 dimensions")
    if expect_ndim is not None and ndim != expect_ndim:
        raise ValueError(f"{name}: expected an idx file with {expect_ndim} dimensions, header says {ndim}")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise ValueError(f"{name}: truncated idx header ({len(raw)} bytes, {header_end} needed)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header_end
    if found != expected:
        raise ValueError(
            f"{name}: idx header declares shape {shape} ({expected} data bytes) but the file holds {found}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path, expect_ndim: int | None = None) -> np.ndarray:
    """Read an idx or idx.gz file; see :func:`read_idx_bytes` for the validation performed."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: idx file not found")
    return read_idx_bytes(path.read_bytes(), name=str(path), expect_ndim=expect_ndim)
