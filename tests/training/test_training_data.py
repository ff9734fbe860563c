"""Image folders, patches and validation data: determinism and error paths."""

import numpy as np
import pytest
import torch

from pnp_stable.training.data import PatchSampler, ValidationSet, list_images, read_image, training_image_paths


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(ValueError, match="not found"):
        list_images(tmp_path / "missing")


def test_unreadable_file_is_named(image_folder):
    bad = image_folder / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png"):
        PatchSampler(list_images(image_folder), 1, 16, (0.1, 0.1))


def test_images_smaller_than_the_patch_are_refused(image_folder):
    with pytest.raises(ValueError, match="smaller than the 64px patch"):
        PatchSampler(list_images(image_folder), 1, 64, (0.1, 0.1))


def test_bsds_layout_never_uses_val(tmp_path, make_images):
    root = tmp_path / "bsds500"
    for split in ("train", "test", "val"):
        make_images(root / "images" / split, count=2)
    paths = training_image_paths([root])
    assert len(paths) == 4 and all(p.parent.name in ("train", "test") for p in paths)
    with pytest.raises(ValueError, match="BSD68"):
        training_image_paths([root / "images" / "val"])


def test_gray_and_rgb_reading(tmp_path, make_images):
    folder = make_images(tmp_path / "rgb", count=1, mode="RGB")
    path = list_images(folder)[0]
    assert read_image(path, 3).shape == (40, 36, 3)
    assert read_image(path, 1).shape == (40, 36, 1)


def test_batches_are_a_function_of_seed_step_and_rank(image_folder):
    sampler = PatchSampler(list_images(image_folder), 1, 16, (0.05, 0.2))
    a = sampler.batch(6, step=3, seed=1)
    b = sampler.batch(6, step=3, seed=1)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    c = sampler.batch(6, step=4, seed=1)
    d = sampler.batch(6, step=3, seed=1, rank=1)
    assert not torch.equal(a[1], c[1]) and not torch.equal(a[1], d[1])
    clean, noisy, sigma = a
    assert clean.shape == noisy.shape == (6, 1, 16, 16)
    assert clean.min() >= 0 and clean.max() <= 1
    assert bool(((sigma >= 0.05) & (sigma <= 0.2)).all())
    # the noise has the drawn standard deviation (per patch, loosely: 256 samples each)
    std = (noisy - clean).flatten(1).std(1)
    assert torch.allclose(std, sigma, rtol=0.3)


def test_patches_come_from_the_images_up_to_flips_and_rotations(tmp_path, make_images):
    folder = make_images(tmp_path / "one", count=1, size=(16, 16))
    image = torch.from_numpy(np.asarray(read_image(list_images(folder)[0], 1), dtype=np.float32)[..., 0] / 255)
    sampler = PatchSampler(list_images(folder), 1, 16, (0.0, 0.0))
    variants = [torch.rot90(v, k, (-2, -1)) for v in (image, image.flip(-1)) for k in range(4)]
    clean, noisy, _ = sampler.batch(8, step=0)
    assert torch.equal(clean, noisy)
    for patch in clean[:, 0]:
        assert any(torch.allclose(patch, v) for v in variants)


def test_validation_noise_is_deterministic(image_folder):
    data = ValidationSet.from_folder(image_folder, 1, limit=2, crop=20)
    assert len(data.images) == 2 and data.images[0].shape == (1, 1, 20, 20)
    assert torch.equal(data.noisy(1, 0.1), data.noisy(1, 0.1))
    assert not torch.equal(data.noisy(0, 0.1) - data.images[0], data.noisy(1, 0.1) - data.images[1])


def test_sigma_range_is_checked(image_folder):
    with pytest.raises(ValueError, match="sigma range"):
        PatchSampler(list_images(image_folder), 1, 16, (0.2, 0.1))
