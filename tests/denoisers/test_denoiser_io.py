"""Saving/loading denoisers, the certificate re-check on load, and the shipped models."""

import json

import numpy as np
import pytest
import torch

import pnp_stable.denoisers as denoisers
from pnp_stable.denoisers import DenoiserConfig, build_denoiser, save_denoiser
from pnp_stable.layers import certificate_of


def small_model():
    model = build_denoiser(DenoiserConfig(width=3, hidden=5, blocks=2, embedding_dim=8, power_size=8))
    model.freeze_substeps()
    return model.eval()


def test_round_trip_keeps_outputs_and_certificate(tmp_path):
    model = small_model()
    cert = model.certificate()
    path = tmp_path / "m.pt"
    save_denoiser(model, path, {"certificate": {"lipschitz": cert.lipschitz, "averagedness": cert.averagedness}})
    loaded = denoisers.load(path)
    assert not loaded.training
    x = torch.rand(2, 1, 9, 8)
    torch.testing.assert_close(loaded(x, 0.1), model(x, 0.1))
    assert certificate_of(loaded).averagedness == pytest.approx(cert.averagedness, rel=1e-12)
    assert loaded.metadata["certificate"]["averagedness"] == cert.averagedness


def test_files_leave_out_power_vectors_and_old_files_with_them_still_load(tmp_path):
    model = small_model()
    path = tmp_path / "m.pt"
    save_denoiser(model, path)
    stored = torch.load(path, weights_only=True)["state_dict"]
    assert not any(k.endswith("power_vector") for k in stored)
    assert any(k.endswith("norm_estimate") for k in stored)  # the converged estimates stay
    x = torch.rand(1, 1, 9, 8)
    torch.testing.assert_close(denoisers.load(path)(x, 0.1), model(x, 0.1))
    # a file written before (power vectors included) loads as it did
    old = {"format": denoisers.io.FORMAT, "config": model.config.to_dict(), "state_dict": model.state_dict(),
           "metadata": {}}
    torch.save(old, tmp_path / "old.pt")
    torch.testing.assert_close(denoisers.load(tmp_path / "old.pt")(x, 0.1), model(x, 0.1))
    # but a missing weight is still an error
    del old["state_dict"]["network.1.linear.weight"]
    torch.save(old, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="do not match"):
        denoisers.load(tmp_path / "broken.pt")


def test_load_rejects_a_certificate_the_weights_do_not_support(tmp_path):
    model = small_model()
    alpha = model.certificate().averagedness
    path = tmp_path / "m.pt"
    save_denoiser(model, path, {"certificate": {"lipschitz": 1.0, "averagedness": alpha * 0.9}})
    with pytest.raises(ValueError, match="averagedness"):
        denoisers.load(path)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown denoiser 'no-such-model'"):
        denoisers.load("no-such-model")
    with pytest.raises(ValueError, match="not found"):
        denoisers.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"junk.pt is not a pnp-stable denoiser file \(it could not be read as one"):
        denoisers.load(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="not a pnp-stable denoiser"):
        denoisers.load(foreign)


def test_an_unreadable_file_gives_one_short_line_not_torchs_weights_only_text(tmp_path):
    """(pnp_stable.fileio.read_torch_file, tested on every kind of unreadable file in test_fileio.py.)"""
    path = tmp_path / "bad.pt"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError) as refused:
        denoisers.load(path)
    assert str(refused.value) == f"{path} is not a pnp-stable denoiser file (it could not be read as one)"


def test_an_existing_file_is_read_as_a_file_whatever_its_suffix(tmp_path, monkeypatch):
    """``garbage.png`` names a file, not an unknown model: the error says what is wrong with it.
    A folder is refused as one; shipped names still win over a same-named file in the folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG not a model")
    with pytest.raises(ValueError, match="^garbage.png is not a pnp-stable denoiser file"):
        denoisers.load("garbage.png")
    model = small_model()
    save_denoiser(model, tmp_path / "mine.pth")
    assert isinstance(denoisers.load("mine.pth"), type(model))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="folder is a folder, not a denoiser file"):
        denoisers.load("folder")
    (tmp_path / "gray").write_bytes(b"junk")
    from pnp_stable.denoisers import io as denoiser_io

    assert denoiser_io._resolve("gray").parent == denoiser_io.pretrained_dir()  # the shipped model, not the junk


def test_save_is_atomic_and_never_leaves_partial_files(tmp_path):
    model = small_model()
    path = tmp_path / "m.pt"
    save_denoiser(model, path)
    before = path.read_bytes()

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        save_denoiser(model, path, {"bad": Unserialisable()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def _camera_crop():
    from skimage import data

    return torch.from_numpy(data.camera()[200:296, 200:296].astype(np.float32) / 255.0)[None, None]


def test_shipped_models_are_listed_certified_and_denoise():
    shipped = denoisers.available()
    assert any(m["certified"] and m["channels"] == 1 for m in shipped), "no certified gray model is shipped"
    gray = _camera_crop()
    # a colour model sees camera with RGB channels that share its edges, as a photograph's do
    rgb = torch.cat([0.9 * gray + 0.05, 0.8 * gray + 0.1, 0.6 * gray + 0.3], dim=1)
    for meta in shipped:
        model = denoisers.load(meta["name"])
        clean = rgb if meta["channels"] == 3 else gray
        cert = certificate_of(model)
        if meta["certified"]:
            # load() recomputed the certificate from the weights; it must match the metadata
            assert cert.averagedness == pytest.approx(meta["certificate"]["averagedness"], rel=1e-6)
            assert cert.lipschitz <= 1.0
        lo, hi = meta["sigma_range_255"]
        # PSNR gain over the noisy input required at the ends of the trained range
        for sigma_255, required_gain in ((lo, 0.3), (hi, 3.0)):
            sigma = sigma_255 / 255
            g = torch.Generator().manual_seed(0)
            noisy = clean + sigma * torch.randn(clean.shape, generator=g)
            with torch.no_grad():
                out = model(noisy, sigma)
            gain = 10 * torch.log10(((noisy - clean) ** 2).mean() / ((out.clamp(0, 1) - clean) ** 2).mean())
            assert gain > required_gain, f"{meta['name']} at sigma {sigma_255}: only {float(gain):.2f} dB better than noisy"


def test_metadata_files_are_complete():
    for meta in denoisers.available():
        measured = "cbsd68_psnr" if meta.get("channels") == 3 else "bsd68_psnr"  # colour models: CBSD68
        for key in ("name", "architecture", "sigma_range_255", "certificate", measured, "date", "commit",
                    "training"):
            assert key in meta, f"{meta['name']}: metadata lacks {key}"
        assert json.loads(json.dumps(meta)) == meta


def test_the_shipped_gray_model_carries_its_ct_rules_and_the_solvers_read_them():
    """``gray`` ships a CT ADMM rule with a density term (and a CT FB rule): a re-export that lost
    ``--pnp-rule ct:admm`` would leave CT on the blur rule, 2.5 dB lower at low noise and dense views
    (docs/benchmarks.md); DRS shares it, a blur (no family) keeps the generic rule."""
    from pnp_stable.solvers.parameters import rule_for

    model = denoisers.load("gray")
    ct_admm = rule_for(model, "noise_level", "admm", problem="ct")
    assert ct_admm.density_exponent > 0 and 1.0 < ct_admm.exponent < 2.0
    assert rule_for(model, "noise_level", "drs", problem="ct") == ct_admm
    assert rule_for(model, "noise_level", "admm") != ct_admm  # the generic (blur) rule
    assert rule_for(model, "noise_level", "fb", problem="ct") != rule_for(model, "noise_level", "fb")
    provenance = model.metadata["pnp_parameter_calibration"]["ct"]["admm"]
    assert provenance["angles"] == [30, 60, 180, 360] and len(provenance["noise_relative"]) == 4


def test_user_models_are_found_by_name_and_listed(tmp_path, monkeypatch):
    user = tmp_path / "mine"
    monkeypatch.setenv("PNP_STABLE_MODELS", str(user))
    assert denoisers.user_models_dir() == user
    with pytest.raises(ValueError, match="unknown denoiser 'my-model'"):
        denoisers.load("my-model")
    assert all(m["source"] == "shipped" for m in denoisers.available())  # folder absent: fine
    user.mkdir()
    model = small_model()
    cert = model.certificate()
    meta = {"name": "my-model", "certificate": {"lipschitz": cert.lipschitz, "averagedness": cert.averagedness}}
    save_denoiser(model, user / "my-model.pt", meta)
    (user / "my-model.json").write_text(json.dumps(meta))
    (user / "broken.pt").write_bytes(b"x")
    (user / "broken.json").write_text("{not json")
    (user / "gray.pt").write_bytes(b"x")  # a user model cannot hijack a shipped name
    (user / "gray.json").write_text("{}")
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(denoisers.load("my-model")(x, 0.1), model(x, 0.1))
    listed = {(m["name"], m["source"]): m for m in denoisers.available()}
    assert listed[("my-model", "user")]["path"] == str(user / "my-model.pt")
    assert "unreadable metadata" in listed[("broken", "user")]["error"]
    assert listed[("gray", "user")]["shadowed"] and not listed[("gray", "shipped")].get("shadowed")
    assert denoisers.load("gray").metadata.get("name") == "gray"  # the shipped one
    assert [m["name"] for m in denoisers.available(include_user=False)] == \
        [m["name"] for m in denoisers.available() if m["source"] == "shipped"]


def _saved_with(tmp_path, key, value):
    """A small model's file whose state entry ``key`` is replaced by ``value`` (a crafted file)."""
    model = small_model()
    state = model.state_dict()
    state[key] = value(state[key]) if callable(value) else value
    payload = {"format": denoisers.io.FORMAT, "config": model.config.to_dict(), "state_dict": state, "metadata": {}}
    torch.save(payload, tmp_path / "m.pt")
    return tmp_path / "m.pt"


def _first_entry_set_to(number):
    def tamper(tensor):
        tensor = tensor.clone()
        tensor.view(-1)[0] = number
        return tensor
    return tamper


@pytest.mark.parametrize("key,value", [("network.1.bias", float("nan")), ("network.2.linear.weight", float("inf")),
                                       ("embedding.mlp.0.weight", float("nan"))])
def test_a_file_with_non_finite_weights_is_refused(tmp_path, key, value):
    # a NaN bias or embedding makes every output NaN while the certificate (from the finite
    # convolution weights) still read alpha < 1; an inf 1x1 kernel had a "bound" of 0
    with pytest.raises(ValueError, match="non-finite|NaN or infinite"):
        denoisers.load(_saved_with(tmp_path, key, _first_entry_set_to(value)))


@pytest.mark.parametrize("time", [-1.0, 0.5, 1e300])
def test_a_file_whose_blocks_store_another_integration_time_is_refused(tmp_path, time):
    # T = -1 runs the flow backwards (expansive); 1e300 asks for ~1e300 sub-steps
    with pytest.raises(ValueError, match="integration time"):
        denoisers.load(_saved_with(tmp_path, "network.1.time", torch.tensor(time, dtype=torch.float64)))


@pytest.mark.parametrize("count", [-3, 10**12])
def test_a_file_with_an_absurd_frozen_sub_step_count_is_refused(tmp_path, count):
    # more sub-steps never weaken the certificate, but 10^12 of them make every call endless
    with pytest.raises(ValueError, match=f"block 0 stores {count} frozen sub-steps; at most 10000"):
        denoisers.load(_saved_with(tmp_path, "network.1.fixed_substeps", torch.tensor(count, dtype=torch.int64)))


@pytest.mark.parametrize("field,value", [("time", float("inf")), ("center", float("nan"))])
def test_a_configuration_with_non_finite_numbers_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        DenoiserConfig(**{field: value})
