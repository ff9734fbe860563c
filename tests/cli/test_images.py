import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pnp_stable.cli.images import default_output, list_images, read_image, write_image
from pnp_stable.png16 import read_rgb16_png


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def write_filtered_png16(path, img, filters):
    """Reference encoder applying PNG filters 0-4 row by row (to test the decoder's filters)."""
    h, w, c = img.shape
    bpp = 2 * c
    rows = [np.frombuffer(img[i].astype(">u2").tobytes(), dtype=np.uint8).astype(int) for i in range(h)]
    out = b""
    prev = np.zeros_like(rows[0])
    for y, row in enumerate(rows):
        f = filters[y % len(filters)]
        enc = []
        for i, v in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            cc = prev[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, cc)][f]
            enc.append((v - pred) % 256)
        out += bytes([f]) + bytes(enc)
        prev = row

    def chunk(k, d):
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(out)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def test_rgb16_png_decoder_handles_every_filter(tmp_path):
    img = (np.random.default_rng(0).random((9, 7, 3)) * 65535).astype(np.uint16)
    p = tmp_path / "f.png"
    write_filtered_png16(p, img, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(read_rgb16_png(p), img)


@pytest.mark.parametrize("suffix,depth", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16), (".npy", None)])
@pytest.mark.parametrize("rgb", [False, True])
def test_round_trip_keeps_bit_depth(tmp_path, suffix, depth, rgb):
    rng = np.random.default_rng(1)
    arr = rng.random((12, 10, 3) if rgb else (12, 10)).astype(np.float32)
    p = write_image(tmp_path / f"x{suffix}", arr, depth)
    back = read_image(p)
    assert back.bit_depth == depth and back.data.shape == arr.shape
    tol = {8: 0.5 / 255, 16: 0.5 / 65535, None: 0}[depth]
    assert np.abs(back.data - arr).max() <= tol + 1e-7


def test_jpeg_is_eight_bit(tmp_path):
    arr = np.random.default_rng(2).random((16, 16)).astype(np.float32)
    p = write_image(tmp_path / "x.jpg", arr, 16)
    assert read_image(p).bit_depth == 8


def test_write_refuses_the_input_and_is_atomic(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(src)
    before = src.read_bytes()
    with pytest.raises(ValueError, match="refusing to overwrite"):
        write_image(src, np.ones((10, 10)), 8, protect=(src,))
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]  # no temporary left behind


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a recognised image"):
        read_image(bad)
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((10, 10), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        read_image(nan)
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (10, 10)).save(cmyk)
    with pytest.raises(ValueError, match="CMYK"):
        read_image(cmyk)
    odd = tmp_path / "odd.txt"
    odd.write_text("x")
    with pytest.raises(ValueError, match="unsupported image type"):
        read_image(odd)
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="too small"):
        read_image(small)
    four = tmp_path / "four.npy"
    np.save(four, np.zeros((10, 10, 5)))
    with pytest.raises(ValueError, match="expected a gray"):
        read_image(four)


def test_default_output_and_listing(tmp_path):
    assert default_output(tmp_path / "a.tif", "restored").name == "a_restored.tif"
    assert default_output(None, "restored").name == "camera_restored.png"
    with pytest.raises(ValueError, match="no images"):
        list_images(tmp_path)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied_so_the_output_matches_the_display(tmp_path, suffix):
    from PIL import ImageOps

    stored = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)  # 12 rows x 20 columns: not square
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / f"turned{suffix}"
    im.save(path, exif=exif, **({"quality": 100} if suffix == ".jpg" else {}))
    loaded = read_image(path)
    with Image.open(path) as reopened:
        shown = np.asarray(ImageOps.exif_transpose(reopened), dtype=np.float32) / 255
    assert loaded.data.shape == (20, 12) and np.array_equal(loaded.data, shown)
    assert any("EXIF orientation 6 applied" in note for note in loaded.notes)
    plain = tmp_path / f"plain{suffix}"
    Image.fromarray(stored).save(plain)
    assert read_image(plain).data.shape == (12, 20) and not read_image(plain).notes


def test_a_tiff_stack_is_refused_and_planar_rgb_is_read_as_rgb(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "stack.tif", (rng.random((3, 20, 30)) * 65535).astype(np.uint16),
                     photometric="minisblack")  # three pages: a stack, not a planar RGB image
    with pytest.raises(ValueError, match=r"stack.tif holds 3 images \(a TIFF stack"):
        read_image(tmp_path / "stack.tif")
    rgb = (rng.random((3, 20, 30)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate")
    loaded = read_image(tmp_path / "planar.tif")
    assert loaded.data.shape == (20, 30, 3)
    np.testing.assert_array_equal(loaded.data, np.moveaxis(rgb, 0, -1) / np.float32(255))


def test_hidden_files_are_not_listed_as_images(tmp_path):
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "._a.png").write_bytes(b"\0\0")  # macOS's resource fork of a.png
    assert [p.name for p in list_images(tmp_path)] == ["a.png"]


def test_the_png16_benchmark_encodes_what_the_decoder_reads_back(tmp_path):
    from bench_loader import load_bench_script

    bench = load_bench_script("bench_png16")
    img = (np.random.default_rng(1).random((9, 7, 3)) * 65535).astype(np.uint16)
    for filters in ([0], [1], [2], [3], [4], [4, 3, 2, 1, 0]):
        (tmp_path / "a.png").write_bytes(bench.encode_rgb16_png(img, filters))
        np.testing.assert_array_equal(read_rgb16_png(tmp_path / "a.png"), img)
    assert bench.main(["--size", "20x30", "--filters", "0", "4", "--repeats", "1",
                       "--json", str(tmp_path / "r.json")]) == 0


def test_an_imagej_composite_with_three_channels_is_rgb(tmp_path):
    import tifffile

    rgb = (np.random.default_rng(2).random((3, 12, 10)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", rgb, imagej=True, metadata={"axes": "CYX"})
    loaded = read_image(tmp_path / "c.tif")
    assert loaded.data.shape == (12, 10, 3)
    np.testing.assert_allclose(loaded.data, np.moveaxis(rgb, 0, -1) / 65535.0, atol=1e-6)


def test_twelve_bit_samples_in_a_16_bit_file_get_a_note(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "d.tif", (np.random.default_rng(3).random((16, 16)) * 4095).astype(np.uint16))
    loaded = read_image(tmp_path / "d.tif")
    assert loaded.bit_depth == 16 and any("12-bit data in a 16-bit file?" in n for n in loaded.notes)
    tifffile.imwrite(tmp_path / "f.tif", (np.random.default_rng(3).random((16, 16)) * 65535).astype(np.uint16))
    assert not any("12-bit" in n for n in read_image(tmp_path / "f.tif").notes)
