import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # These tests run tiny tensors, for which a second intra-op thread only adds synchronisation
    # cost (and stalls badly when the shared cores are busy).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_images(folder, count=4, size=(40, 36), seed=0, mode="L"):
    """Smooth synthetic images (random blobs) saved as PNG; returns the folder."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(count):
        img = np.zeros((h, w))
        for _ in range(6):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 12)
            img += rng.uniform(-1, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        img = (img - img.min()) / (np.ptp(img) + 1e-9)
        arr = (255 * img).astype(np.uint8)
        if mode == "RGB":
            arr = np.stack([arr, arr[::-1], arr[:, ::-1]], axis=-1)
        Image.fromarray(arr, mode=None).save(folder / f"img_{i:03d}.png")
    return folder


@pytest.fixture
def make_images():
    return write_images


@pytest.fixture
def image_folder(tmp_path):
    return write_images(tmp_path / "train")
