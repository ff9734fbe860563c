"""16-bit RGB PNG decoding: time of ``pnp_stable.png16.read_rgb16_png`` (Pillow reads such files
as 8 bits only) and a check that it returns the encoded samples exactly.

    python bench/bench_png16.py [--size 3000x4000] [--filters 0 1 2 3 4] [--repeats 3] [--json out.json]

The image is a seeded smooth gradient plus noise (uint16 RGB), encoded here with the PNG filters
``--filters`` taken row by row in turn (one value: that filter on every row; libpng's adaptive
choice mostly picks Paeth, 4, on photographs). The encoder is vectorised: a filter predicts from
the unfiltered bytes, which the encoder knows in full. The time is the median of ``--repeats``
reads after one warm-up read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import run_record  # noqa: E402


def _predictions(row: np.ndarray, prev: np.ndarray, bpp: int, kind: int) -> np.ndarray:
    """The PNG filter ``kind``'s prediction of every byte of ``row`` (int arrays) from ``row``
    itself (``bpp`` bytes back) and ``prev``, the row above."""
    a = np.concatenate([np.zeros(bpp, dtype=row.dtype), row[:-bpp]])
    c = np.concatenate([np.zeros(bpp, dtype=row.dtype), prev[:-bpp]])
    b = prev
    if kind == 0:
        return np.zeros_like(row)
    if kind == 1:
        return a
    if kind == 2:
        return b
    if kind == 3:
        return (a + b) // 2
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def encode_rgb16_png(image: np.ndarray, filters: list[int]) -> bytes:
    """``image`` (``H x W x 3`` uint16) as a 16-bit RGB PNG whose row ``y`` uses filter
    ``filters[y % len(filters)]``."""
    height, width, _ = image.shape
    rows = np.frombuffer(np.ascontiguousarray(image.astype(">u2")).tobytes(), dtype=np.uint8)
    rows = rows.reshape(height, width * 6).astype(np.int32)
    prev = np.zeros(width * 6, dtype=np.int32)
    out = []
    for y in range(height):
        kind = filters[y % len(filters)]
        encoded = (rows[y] - _predictions(rows[y], prev, 6, kind)) % 256
        out.append(bytes([kind]) + encoded.astype(np.uint8).tobytes())
        prev = rows[y]

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(out), 6)) + chunk(b"IEND", b""))


def main(argv: list[str] | None = None) -> int:
    from pnp_stable.png16 import read_rgb16_png

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="3000x4000", help="HxW")
    parser.add_argument("--filters", type=int, nargs="+", default=[4], choices=range(5))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    ramp = (yy / max(height - 1, 1) + xx / max(width - 1, 1))[..., None] * np.array([20000.0, 25000.0, 30000.0])
    image = np.clip(ramp + rng.normal(0, 500, (height, width, 3)), 0, 65535).astype(np.uint16)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.png"
        path.write_bytes(encode_rgb16_png(image, args.filters))
        decoded = read_rgb16_png(path)  # warm-up, and the exactness check
        exact = bool(np.array_equal(decoded, image))
        times = []
        for _ in range(args.repeats):
            tic = time.perf_counter()
            read_rgb16_png(path)
            times.append(time.perf_counter() - tic)
    seconds = statistics.median(times)
    result = run_record(__file__, argv, size=[height, width], filters=args.filters, seconds=seconds,
                        mpixel_per_s=height * width / 1e6 / seconds, exact=exact)
    print(f"{height}x{width} RGB16, filters {args.filters}: {seconds:.3f} s ({result['mpixel_per_s']:.1f} Mpixel/s), "
          f"{'exact' if exact else 'NOT EXACT'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
