import gzip

import numpy as np
import pytest

from pnp_stable.classify import load_dataset, read_idx
from pnp_stable.classify.idx import read_idx_bytes

from classify_helpers import idx_bytes, write_idx


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("compress", [False, True])
def test_roundtrip_every_type(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / "a-idx3", array, compress)
    out = read_idx(path, expect_ndim=3)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_compression_detected_from_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "plain-name-idx2"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "too short"),
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "not an idx file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown idx element type 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated idx header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", r"declares shape \(3,\) \(3 data bytes\) but the file holds 2"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "the file holds 2"),
        (b"\x00\x00\x0c\x01\x00\x00\x00\x02" + b"\x00" * 7, r"\(8 data bytes\) but the file holds 7"),
    ],
)
def test_malformed_headers_and_sizes(raw, message):
    with pytest.raises(ValueError, match=message):
        read_idx_bytes(raw, name="bad-file")


def test_error_names_the_file(tmp_path):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01")
    with pytest.raises(ValueError, match="broken-idx1-ubyte"):
        read_idx(path)


def test_wrong_dimension_count():
    with pytest.raises(ValueError, match="expected an idx file with 3 dimensions, header says 1"):
        read_idx_bytes(idx_bytes(np.zeros(4, np.uint8)), expect_ndim=3)


def test_truncated_gzip(tmp_path):
    packed = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))
    path = tmp_path / "cut-idx3-ubyte.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="idx file not found"):
        read_idx(tmp_path / "nope")


def test_mnist_folder_loads(mnist_folder):
    train = load_dataset("fashion_mnist", mnist_folder, "train")
    test = load_dataset("mnist", mnist_folder, "test")
    assert train.images.shape == (96, 1, 12, 12) and test.images.shape == (40, 1, 12, 12)
    assert train.class_names[0] == "T-shirt/top" and test.class_names[9] == "9"
    assert train.images.dtype.is_floating_point is False


def test_uncompressed_files_are_found(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 4, 4), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1, 2], np.uint8))
    assert len(load_dataset("mnist", tmp_path, "test")) == 2


def test_count_mismatch_between_images_and_labels(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 4, 4), np.uint8), True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(2, np.uint8), True)
    with pytest.raises(ValueError, match="holds 3 images but train-labels-idx1-ubyte.gz holds 2 labels"):
        load_dataset("mnist", tmp_path, "train")


def test_label_out_of_range(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 4, 4), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([3, 10], np.uint8))
    with pytest.raises(ValueError, match="label 10 is out of range for 10 classes"):
        load_dataset("mnist", tmp_path, "train")


def test_images_must_be_uint8(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 4, 4), np.float32))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([3, 1], np.uint8))
    with pytest.raises(ValueError, match="expected uint8 idx files"):
        load_dataset("mnist", tmp_path, "train")


def test_images_file_with_wrong_rank(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 16), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([3, 1], np.uint8))
    with pytest.raises(ValueError, match="3 dimensions, header says 2"):
        load_dataset("mnist", tmp_path, "train")


def test_missing_files_and_folder(tmp_path):
    with pytest.raises(ValueError, match=r"missing train-images-idx3-ubyte\[.gz\]"):
        load_dataset("mnist", tmp_path, "train")
    with pytest.raises(ValueError, match="data folder not found"):
        load_dataset("mnist", tmp_path / "absent", "train")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_dataset("mnist", tmp_path, "validation")
