import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from pnp_stable.classify import ImageClassificationData, load_dataset
from pnp_stable.classify.augment import random_crop_flip


def _write_cifar(folder, per_batch=6, seed=0):
    """A stand-in for cifar-10-batches-py: same file names, pickle layout and pixel order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batches[name] = (data, labels)
        with open(folder / name, "wb") as f:  # the originals are Python 2 pickles with bytes keys
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, f, protocol=2)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, f, protocol=2)
    return batches


def test_cifar_standin_layout(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    train = load_dataset("cifar10", tmp_path, "train")  # the parent folder is accepted too
    test = load_dataset("cifar10", tmp_path / "cifar-10-batches-py", "test")
    assert train.images.shape == (30, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    assert train.class_names[1] == "automobile"
    data, labels = batches["data_batch_2"]
    # row = 1024 red, 1024 green, 1024 blue values, each a 32x32 image in row-major order
    k = 6 + 4
    assert int(train.images[k, 1, 3, 7]) == int(data[4, 1024 + 3 * 32 + 7])
    assert int(train.labels[k]) == labels[4]
    torch.testing.assert_close(test.images[0].flatten(), torch.from_numpy(batches["test_batch"][0][0]))


def test_cifar_refuses_code_in_pickles(tmp_path):
    _write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(ValueError, match=r"refusing to load (__builtin__|builtins)\.print"):
        load_dataset("cifar10", tmp_path, "test")


def test_cifar_errors(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(ValueError, match="missing CIFAR-10 batch files data_batch_3"):
        load_dataset("cifar10", tmp_path, "train")
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(ValueError, match="'data' must be a uint8 N x 3072 array"):
        load_dataset("cifar10", tmp_path, "test")
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, f, protocol=2)
    with pytest.raises(ValueError, match="one label per image"):
        load_dataset("cifar10", tmp_path, "test")
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        load_dataset("cifar10", tmp_path, "test")
    with pytest.raises(ValueError, match="CIFAR-10 folder not found"):
        load_dataset("cifar10", tmp_path / "absent", "test")


def _png(path, size, value, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def test_image_folder(tmp_path):
    _png(tmp_path / "train" / "cats" / "a.png", (5, 4), 10)
    _png(tmp_path / "train" / "cats" / "b.png", (5, 4), 20)
    _png(tmp_path / "train" / "ants" / "c.png", (5, 4), 30)
    (tmp_path / "train" / "ants" / "notes.txt").write_text("ignored")
    data = load_dataset("image_folder", tmp_path, "train")
    assert data.class_names == ["ants", "cats"]  # sorted folder names
    assert data.images.shape == (3, 1, 4, 5)
    assert data.labels.tolist() == [0, 1, 1]
    assert data.images[0].unique().tolist() == [30]


def test_image_folder_colour_and_resize(tmp_path):
    _png(tmp_path / "x" / "a.png", (6, 6), (255, 0, 0), "RGB")
    _png(tmp_path / "y" / "b.png", (8, 8), 128)
    with pytest.raises(ValueError, match=r"b.png: size 8x8 \(HxW\) differs from a.png \(6x6\); resize them"):
        load_dataset("image_folder", tmp_path)
    data = load_dataset("image_folder", tmp_path, image_size=(4, 3))
    assert data.images.shape == (2, 3, 4, 3)  # one colour image: everything becomes RGB
    assert data.images[0, :, 0, 0].tolist() == [255, 0, 0]


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no images found"):
        load_dataset("image_folder", tmp_path)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="broken.png: cannot read image"):
        load_dataset("image_folder", tmp_path)
    with pytest.raises(ValueError, match="image folder not found"):
        load_dataset("image_folder", tmp_path / "absent")
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        load_dataset("svhn", tmp_path)


def test_container_validation_and_subset(make_data):
    with pytest.raises(ValueError, match="uint8"):
        ImageClassificationData(torch.zeros(2, 1, 4, 4), torch.zeros(2), ["a"])
    with pytest.raises(ValueError, match="2 images but labels of shape"):
        ImageClassificationData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3), ["a"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ImageClassificationData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), ["a", "b"])
    data = make_data(50)
    a, b = data.subset(20, seed=3), data.subset(20, seed=3)
    assert len(a) == 20 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert data.subset(None) is data and data.subset(500) is data
    x = data.float_images(slice(0, 4))
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_augmentation_is_a_shift_or_mirror():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_crop_flip(x, g, padding=0, flip=False), x)
    out = random_crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    again = random_crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    assert out.shape == x.shape and torch.equal(out, again)
    # every output pixel is zero padding or an input pixel of the same image and channel
    for i in range(2):
        values = set(x[i].flatten().tolist()) | {0.0}
        assert set(out[i].flatten().tolist()) <= values


def test_detect_dataset(tmp_path, mnist_folder):
    from pnp_stable.classify import detect_dataset

    assert detect_dataset(mnist_folder) == "mnist"
    fashion = tmp_path / "Fashion_MNIST"
    fashion.mkdir()
    (fashion / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert detect_dataset(fashion) == "fashion_mnist"  # only the class names differ
    _write_cifar(tmp_path / "c" / "cifar-10-batches-py", per_batch=1)
    assert detect_dataset(tmp_path / "c") == "cifar10"
    assert detect_dataset(tmp_path / "c" / "cifar-10-batches-py") == "cifar10"
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    assert detect_dataset(tmp_path / "imgs") == "image_folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot tell the dataset format"):
        detect_dataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="data folder not found"):
        detect_dataset(tmp_path / "absent")
    with pytest.raises(ValueError, match="got a file"):
        detect_dataset(fashion / "train-images-idx3-ubyte.gz")


def test_image_folder_reads_16_bit_gray_scaled_skips_hidden_files_and_refuses_odd_classes(tmp_path):
    for name, level in (("bright", 50000), ("dark", 8000)):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((6, 6), level, np.uint16)).save(tmp_path / name / "a.png")
        (tmp_path / name / "._a.png").write_bytes(b"\0\0")  # a macOS resource fork: no image
    data = load_dataset("image_folder", tmp_path)
    # scaled from the 16-bit range (50000 / 257 = 194.6), not clipped at 255
    assert data.images[0].unique().tolist() == [195] and data.images[1].unique().tolist() == [31]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: class folder without images"):
        load_dataset("image_folder", tmp_path)
    (tmp_path / "empty").rmdir()
    import shutil

    shutil.rmtree(tmp_path / "dark")
    with pytest.raises(ValueError, match="1 class folder \\(bright\\); a classifier needs at least two"):
        load_dataset("image_folder", tmp_path)
