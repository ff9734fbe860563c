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


def test_jpeg_is_eight_bit_and_float_data_make_a_16_bit_png(tmp_path):
    arr = np.random.default_rng(2).random((16, 16)).astype(np.float32)
    p = write_image(tmp_path / "x.jpg", arr, 16)
    assert read_image(p).bit_depth == 8
    for shape in ((16, 16), (16, 16, 3)):  # a float TIFF or .npy restored into a PNG keeps 16 bits
        data = np.random.default_rng(3).random(shape).astype(np.float32)
        back = read_image(write_image(tmp_path / "f.png", data, None))
        assert back.bit_depth == 16 and np.abs(back.data - data).max() <= 0.5 / 65535 + 1e-7


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


# -- TIFF variants a photographer's tools write (review of 2026-12-06) ---------------------------

@pytest.fixture
def photo():
    """A 24 x 40 RGB image with distinct rows and columns (an orientation shows)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_and_16_bit_png_orientation_tags_are_applied_as_pillow_displays_them(tmp_path, photo, orientation):
    from PIL import ImageOps

    image = Image.fromarray(photo)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(tmp_path / "o.tif", exif=exif)
    with Image.open(tmp_path / "o.tif") as stored:
        displayed = np.asarray(ImageOps.exif_transpose(stored))
    loaded = read_image(tmp_path / "o.tif")
    np.testing.assert_array_equal(np.rint(loaded.data * 255).astype(np.uint8), displayed)
    assert ("EXIF orientation" in " ".join(loaded.notes)) == (orientation != 1)
    # a 16-bit RGB PNG goes through our own decoder, which must turn it too
    png = tmp_path / "o16.png"
    _write_png16_with_orientation(png, photo.astype(np.uint16) * 257, orientation)
    loaded16 = read_image(png)
    np.testing.assert_array_equal(np.rint(loaded16.data * 255).astype(np.uint8), displayed)


def _write_png16_with_orientation(path, img16, orientation):
    h, w, _ = img16.shape
    raw = b"".join(b"\x00" + img16[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    tiff_exif = b"MM\x00*\x00\x00\x00\x08\x00\x01" + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\x00" * 4
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"eXIf", tiff_exif) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_cmyk_and_lab_tiffs_are_refused_and_palette_and_white_is_zero_ones_read_as_displayed(tmp_path, photo):
    import tifffile

    gray = photo[..., 0]
    tifffile.imwrite(tmp_path / "cmyk.tif", np.asarray(Image.fromarray(photo).convert("CMYK")), photometric="separated")
    with pytest.raises(ValueError, match="cmyk.tif is a CMYK TIFF"):
        read_image(tmp_path / "cmyk.tif")
    tifffile.imwrite(tmp_path / "mw.tif", 255 - gray, photometric="miniswhite")
    loaded = read_image(tmp_path / "mw.tif")
    np.testing.assert_array_equal(np.rint(loaded.data * 255).astype(np.uint8), gray)
    assert "white-is-zero" in " ".join(loaded.notes) and loaded.bit_depth == 8
    tifffile.imwrite(tmp_path / "mw16.tif", (65535 - gray.astype(np.uint16) * 257), photometric="miniswhite")
    np.testing.assert_array_equal(np.rint(read_image(tmp_path / "mw16.tif").data * 255).astype(np.uint8), gray)
    palette = Image.fromarray(photo).convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.save(tmp_path / "pal.tif")
    loaded = read_image(tmp_path / "pal.tif")
    np.testing.assert_array_equal(np.rint(loaded.data * 255).astype(np.uint8), np.asarray(palette.convert("RGB")))
    assert loaded.bit_depth == 8 and "colour map" in " ".join(loaded.notes)


def test_pages_written_one_by_one_are_a_stack_and_a_thumbnail_is_not(tmp_path, photo):
    import tifffile

    gray = photo[..., 0]
    with tifffile.TiffWriter(tmp_path / "pages.tif") as writer:
        writer.write(gray)
        writer.write(gray)
    with pytest.raises(ValueError, match="holds 2 images"):
        read_image(tmp_path / "pages.tif")
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as writer:
        writer.write(gray)
        writer.write(gray[::4, ::4], subfiletype=1)  # a reduced-resolution page
    assert read_image(tmp_path / "thumb.tif").data.shape == gray.shape


def test_a_tiff_compressed_without_tifffiles_codec_is_read_by_pillow(tmp_path, photo):
    """LZW (Photoshop, GIMP, Lightroom offer it) needs the optional imagecodecs in tifffile; Pillow
    decodes it, orientation included. A damaged TIFF names the problem, not an exception class."""
    image = Image.fromarray(photo)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "lzw.tif", compression="tiff_lzw", exif=exif)
    loaded = read_image(tmp_path / "lzw.tif")
    np.testing.assert_array_equal(np.rint(loaded.data * 255).astype(np.uint8), np.rot90(photo, -1))
    (tmp_path / "png.tif").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(ValueError, match=r"cannot read png.tif as a TIFF image: (?!TiffFileError)"):
        read_image(tmp_path / "png.tif")


def test_a_jpeg_tiff_is_read_and_16_bit_colour_without_its_codec_is_refused(tmp_path, photo, monkeypatch):
    """Scanners and libtiff write JPEG-compressed YCbCr TIFFs: Pillow decodes them to RGB. 16-bit
    colour whose codec tifffile lacks (imagecodecs) would come back from Pillow as 8 bits: refused,
    naming the package. A thumbnail page does not make Pillow's path see a stack."""
    import tifffile

    Image.fromarray(photo).save(tmp_path / "ycc.tif", compression="jpeg")  # (Pillow tags it RGB)
    loaded = read_image(tmp_path / "ycc.tif")
    assert loaded.data.shape == photo.shape and np.abs(loaded.data * 255 - photo).mean() < 20
    tifffile.imwrite(tmp_path / "rgb16.tif", photo.astype(np.uint16) * 257)
    real = tifffile.TiffPageSeries.asarray

    def codec_missing(self, *args, **kwargs):
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", codec_missing)
    with pytest.raises(ValueError, match="rgb16.tif's compression .* needs the imagecodecs package"):
        read_image(tmp_path / "rgb16.tif")
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as writer:  # 8-bit: Pillow reads it, thumbnail and all
        writer.write(photo[..., 0])
        writer.write(photo[::4, ::4, 0], subfiletype=1)
    assert read_image(tmp_path / "thumb.tif").data.shape == photo.shape[:2]
    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", real)
