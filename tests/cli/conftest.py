import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data


@pytest.fixture(scope="session")
def tiny_denoiser(tmp_path_factory):
    """A small certified denoiser file (untrained: fast, still certified)."""
    from pnp_stable.denoisers import DenoiserConfig, build_denoiser, save_denoiser

    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(width=4, hidden=6, blocks=2, embedding_dim=8)).eval()
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    cert = model.certificate()
    save_denoiser(model, path, {"channels": 1, "certificate": {"lipschitz": cert.lipschitz,
                                                               "averagedness": cert.averagedness}})
    return path


@pytest.fixture()
def camera_png(tmp_path):
    """A 64x64 crop of scikit-image's camera (the only sample image tests may use)."""
    img = data.camera()[200:264, 220:284]
    path = tmp_path / "cam.png"
    Image.fromarray(img).save(path)
    return path


@pytest.fixture()
def rgb_png(tmp_path):
    cam = data.camera()[200:232, 220:252]
    img = np.stack([cam, cam[::-1], cam[:, ::-1]], axis=-1)
    path = tmp_path / "rgb.png"
    Image.fromarray(img).save(path)
    return path
