"""The opponent-colour denoiser: exact transform, unchanged certificate, and searches that test it."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from pnp_stable.denoisers import DenoiserConfig, OpponentColorDenoiser, build_denoiser
from pnp_stable.denoisers.color import OPPONENT_BASIS
from pnp_stable.layers import certificate_of
from pnp_stable.verification import empirical_averagedness_violation

SEARCH = dict(restarts=1, steps=25, n_pairs=8)
TOL = 1e-9  # float64 rounding


def tiny_gray(**kw) -> nn.Module:
    cfg = dict(width=3, hidden=5, blocks=2, strides=(1, 2), embedding_dim=8, power_size=8, init_scale=1.6)
    cfg.update(kw)
    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(**cfg))
    with torch.no_grad():  # a conditioning that actually moves the biases and the relaxation
        for head in (model.embedding, model.time_embedding):
            for p in () if head is None else head.parameters():
                p.normal_(0, 0.5)
    return model.double().eval()


class Recorder(nn.Module):
    """A 'gray denoiser' that returns its input and remembers what it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, float]] = []

    def forward(self, x, sigma):
        self.calls.append((x.clone(), float(sigma)))
        return x


def test_basis_is_orthonormal_with_luma_first():
    q = np.array(OPPONENT_BASIS)
    assert np.allclose(q @ q.T, np.eye(3), atol=1e-15)
    assert np.allclose(q[0], 1 / math.sqrt(3))  # luma: the scaled mean of R, G, B
    assert np.allclose(q[1:].sum(axis=1), 0)  # chroma planes vanish on gray pixels


def test_gray_model_sees_the_mean_at_reduced_noise_and_scaled_chroma():
    rec = Recorder()
    wrapper = OpponentColorDenoiser(rec, chroma_scale=3.0)
    x = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    out = wrapper(x, 0.1)
    assert torch.allclose(out, x, atol=1e-12)  # identity gray model -> identity (the inverse is exact)
    (luma, s0), (c1, s1), (c2, s2) = rec.calls
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    assert torch.allclose(luma, (r + g + b) / 3, atol=1e-12) and s0 == pytest.approx(0.1 / math.sqrt(3))
    assert torch.allclose(c1, 3 * (r - b) / math.sqrt(2) + 0.5, atol=1e-12) and s1 == pytest.approx(0.3)
    assert torch.allclose(c2, 3 * (r - 2 * g + b) / math.sqrt(6) + 0.5, atol=1e-12) and s2 == pytest.approx(0.3)


def test_noise_levels_stay_on_the_unit_scale():
    # the user's sigma must lie in [0, 1]; an amplified chroma plane's level is capped at 1 (sigma = 0.5
    # would ask the gray model for 1.5, which it refuses as a level on the wrong scale)
    rec = Recorder()
    wrapper = OpponentColorDenoiser(rec, chroma_scale=3.0)
    wrapper(torch.rand(1, 3, 4, 4, dtype=torch.float64), 0.5)
    assert [s for _, s in rec.calls] == [pytest.approx(0.5 / math.sqrt(3)), 1.0, 1.0]
    with pytest.raises(ValueError, match="sigma 25 is above 1"):
        wrapper(torch.rand(1, 3, 4, 4, dtype=torch.float64), 25.0)


def test_per_image_noise_levels_are_passed_through():
    rec = Recorder()
    wrapper = OpponentColorDenoiser(rec)
    rec.forward = lambda x, sigma: (rec.calls.append((x, sigma)), x)[1]
    sigma = torch.tensor([0.1, 0.2], dtype=torch.float64)
    wrapper(torch.rand(2, 3, 4, 4, dtype=torch.float64), sigma)
    assert torch.allclose(rec.calls[0][1], sigma / math.sqrt(3))


def test_certificate_is_the_gray_certificate():
    gray = tiny_gray()
    wrapper = OpponentColorDenoiser(gray)
    cg, cw = certificate_of(gray), certificate_of(wrapper)
    assert cw == cg  # same Lipschitz bound and averagedness (details are not compared)
    assert cw.details[0]["layer"] == "opponent colour transform"
    assert wrapper.metadata["channels"] == 3 and wrapper.metadata["color"]["mode"] == "opponent"
    assert OpponentColorDenoiser(Recorder()).certificate() is None  # an uncertified gray model stays uncertified
    # the pair every certified network reports (README), read from the same certificate
    assert (wrapper.certified_lipschitz_bound(), wrapper.certified_averagedness()) == (cg.lipschitz, cg.averagedness)
    with pytest.raises(ValueError, match="OpponentColorDenoiser states no certificate"):
        OpponentColorDenoiser(Recorder()).certified_lipschitz_bound()
    assert certificate_of(OpponentColorDenoiser(Recorder())) is None  # the pair is not asked then


@pytest.mark.parametrize("sigma", [0.02, 0.2])
def test_adversarial_search_does_not_break_the_certificate(sigma):
    gray = tiny_gray()
    wrapper = OpponentColorDenoiser(gray)
    alpha = wrapper.certificate().averagedness
    assert alpha is not None and alpha < 1
    fn = lambda x: wrapper(x, sigma)  # noqa: E731
    assert empirical_averagedness_violation(fn, alpha, (3, 6, 5), **SEARCH) <= TOL


class ShearedColorDenoiser(OpponentColorDenoiser):
    """Negative control: the same construction with a non-orthogonal (but exactly inverted) transform."""

    def forward(self, x, sigma):
        shear = torch.tensor([[1.0, 0.0, 0.0], [6.0, 1.0, 0.0], [0.0, 6.0, 1.0]], dtype=x.dtype)
        q = shear @ torch.tensor(OPPONENT_BASIS, dtype=x.dtype)
        planes = torch.einsum("ij,bjhw->bihw", q, x)
        out = [(self.gray(planes[:, i:i + 1] * a + 0.5, sigma * a) - 0.5) / a for i, a in enumerate(self.plane_scales())]
        return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(q), torch.cat(out, 1))


def test_search_catches_a_non_orthogonal_colour_transform():
    gray = tiny_gray(init_scale=3.0)
    alpha = certificate_of(gray).averagedness
    broken = ShearedColorDenoiser(gray)
    found = empirical_averagedness_violation(lambda x: broken(x, 0.05), alpha, (3, 6, 5), **SEARCH)
    assert found > 1e-3


def test_refuses_what_it_cannot_certify_or_call():
    with pytest.raises(ValueError, match="noise-level conditioning"):
        OpponentColorDenoiser(tiny_gray(sigma_conditioning=False, learned_relaxation=False, time_conditioning=False))
    with pytest.raises(ValueError, match="noise-level conditioning"):
        OpponentColorDenoiser(nn.Identity())  # forward(x): no noise-level argument to rescale
    with pytest.raises(ValueError, match="gray"):
        OpponentColorDenoiser(build_denoiser(DenoiserConfig(channels=3, width=4, hidden=4, blocks=1)))
    with pytest.raises(ValueError, match="chroma_scale"):
        OpponentColorDenoiser(Recorder(), chroma_scale=0.0)
    wrapper = OpponentColorDenoiser(Recorder())
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        wrapper(torch.rand(1, 1, 4, 4), 0.1)
    with pytest.raises(ValueError, match="noise level"):
        wrapper(torch.rand(1, 3, 4, 4), None)


def _colour_scene(n: int = 48) -> torch.Tensor:
    """Smooth colour gradients with a few saturated discs (synthetic: no reserved photograph)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
    img = torch.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.7 - 0.5 * xx * yy])
    for cy, cx, rad, colour in [(0.3, 0.3, 0.15, (0.9, 0.2, 0.1)), (0.7, 0.6, 0.2, (0.1, 0.5, 0.9)),
                                (0.25, 0.75, 0.1, (0.95, 0.9, 0.2))]:
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2) < rad ** 2
        for c in range(3):
            img[c][mask] = colour[c]
    return img


def _tinted_camera(n: int = 64) -> torch.Tensor:
    """scikit-image's camera (the one photograph tests may use) tinted with smooth colour ramps: RGB
    channels that share their edges, as in colour photographs."""
    from skimage import data

    cam = torch.from_numpy(data.camera()[160:160 + n, 200:200 + n].astype(np.float32) / 255)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
    return torch.stack([0.9 * cam + 0.1 * xx, 0.8 * cam + 0.1, 0.6 * cam + 0.3 * (1 - yy)])


def test_opponent_mode_beats_per_channel_on_a_photograph_with_the_shipped_model():
    from pnp_stable.restore import denoise

    scene = _tinted_camera()
    opp = denoise(scene, 25 / 255, denoiser="gray", simulate=True, device="cpu").report
    per = denoise(scene, 25 / 255, simulate=True, device="cpu", color="per-channel").report
    assert per["denoiser"]["name"] == "gray"  # the colour model takes RGB only: not for per-channel
    assert opp["denoiser"]["color"] == "opponent" and per["denoiser"]["color"] == "per-channel"
    assert "opponent colour space" in opp["notes"][0] and "channel by channel" in per["notes"][0]
    assert opp["metrics"]["psnr"] > per["metrics"]["psnr"] + 0.5
    with pytest.raises(ValueError, match="colour mode"):
        denoise(scene, 0.1, color="ycbcr")


def test_deblur_in_opponent_mode_is_one_certified_rgb_problem():
    from pnp_stable.restore import deblur

    scene = _colour_scene(32)
    rest = deblur(scene, "gauss:1.2", simulate=True, noise_level=0.01, method="admm", denoiser=tiny_gray().float(),
                  max_iter=5, progress=False, device="cpu")
    assert rest.image.shape == (3, 32, 32)
    assert rest.result.x.shape == (1, 3, 32, 32)  # one problem, not a batch of three
    assert rest.result.guarantee.proven and rest.result.monotone


def test_colour_benchmark_runs_both_modes_on_a_cbsd68_layout(tmp_path, capsys):
    import json

    from PIL import Image

    from pnp_stable.denoisers import save_denoiser
    from bench_loader import load_bench_script

    folder = tmp_path / "data" / "denoising" / "cbsd68"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((12, 10, 3)) * 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    model = tiny_gray().float()
    cert = model.certificate()
    path = tmp_path / "tiny.pt"
    save_denoiser(model, path, {"channels": 1, "certificate": {"lipschitz": cert.lipschitz,
                                                               "averagedness": cert.averagedness}})
    bench = load_bench_script("bench_denoise_bsd68")
    out = tmp_path / "r.json"
    assert bench.main([str(path), "--data", str(tmp_path / "data"), "--color", "opponent", "per-channel",
                       "--sigmas", "25", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["protocol"] == "denoise-cbsd68" and "CBM3D" in rep["anchors"]
    rows = rep["results"]
    assert set(rows) == {"tiny (opponent)", "tiny (per-channel)"}
    assert rows["tiny (opponent)"]["images"] == 2
    assert rows["tiny (opponent)"]["alpha"] == pytest.approx(cert.averagedness)
    assert rows["tiny (opponent)"]["psnr"]["25"] != rows["tiny (per-channel)"]["psnr"]["25"]
    capsys.readouterr()
    assert bench.main([str(path), "--data", str(tmp_path / "nowhere"), "--color", "opponent"]) == 2
    assert "CBSD68 folder not found" in capsys.readouterr().err


def test_a_colour_model_file_loads_as_the_opponent_denoiser_and_is_benchmarked_as_it_is(tmp_path, capsys):
    import json

    from PIL import Image

    from pnp_stable.denoisers import load, save_denoiser
    from bench_loader import load_bench_script

    folder = tmp_path / "data" / "denoising" / "cbsd68"
    folder.mkdir(parents=True)
    Image.fromarray((np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)).save(folder / "0.png")
    gray = tiny_gray().float()
    cert = gray.certificate()
    path = tmp_path / "tiny-color.pt"
    save_denoiser(gray, path, {"channels": 3, "color": {"mode": "opponent", "chroma_scale": 2.0},
                               "certificate": {"lipschitz": cert.lipschitz, "averagedness": cert.averagedness}})
    colour = load(path)
    assert isinstance(colour, OpponentColorDenoiser) and colour.chroma_scale == 2.0
    x = torch.rand(1, 3, 12, 10)
    assert torch.equal(colour(x, 0.1), OpponentColorDenoiser(gray, 2.0).eval()(x, 0.1))

    bench = load_bench_script("bench_denoise_bsd68")
    out = tmp_path / "r.json"
    # one row whatever the modes asked for: the model already is a colour denoiser
    assert bench.main([str(path), "--data", str(tmp_path / "data"), "--color", "opponent", "per-channel",
                       "--sigmas", "25", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert list(rows) == ["tiny-color"] and rows["tiny-color"]["alpha"] == pytest.approx(cert.averagedness)
    capsys.readouterr()
    (tmp_path / "data" / "denoising" / "bsd68").mkdir()
    assert bench.main([str(path), "--data", str(tmp_path / "data")]) == 2
    assert "colour model" in capsys.readouterr().err

    save_denoiser(gray, tmp_path / "odd.pt", {"color": {"mode": "cmyk"}})
    with pytest.raises(ValueError, match="unknown colour mode"):
        load(tmp_path / "odd.pt")


def test_restoration_falls_back_to_per_channel_for_a_model_without_noise_level():
    from pnp_stable.restore import denoise

    fixed = tiny_gray(sigma_conditioning=False, learned_relaxation=False, time_conditioning=False).float()
    denoised = denoise(_tinted_camera(16), 0.1, denoiser=fixed, simulate=True, device="cpu")
    out, rep = denoised.image, denoised.report
    assert out.shape == (3, 16, 16) and rep["denoiser"]["color"] == "per-channel"
    assert "takes no noise level" in rep["notes"][0]


def test_rgb_images_get_the_shipped_colour_model_unless_a_denoiser_is_named():
    from pnp_stable.denoisers import available
    from pnp_stable.restore import DEFAULT_COLOR_DENOISER, default_denoiser, denoise

    assert DEFAULT_COLOR_DENOISER in {m["name"] for m in available(include_user=False)}
    assert default_denoiser(3) == DEFAULT_COLOR_DENOISER
    assert default_denoiser(1) == default_denoiser(3, "per-channel") == "gray"
    image = _tinted_camera(64)
    rep = denoise(image, 50 / 255, simulate=True, device="cpu").report
    assert rep["denoiser"]["name"] == DEFAULT_COLOR_DENOISER and rep["denoiser"]["channels"] == 3
    assert not rep["notes"]  # an RGB model: no wrapping, no note
    named = denoise(image, 50 / 255, denoiser="gray", simulate=True, device="cpu").report
    assert named["denoiser"]["name"] == "gray" and named["denoiser"]["color"] == "opponent"
    # trained for the job: better than the gray weights in the same colour denoiser (measured
    # 27.47 against 27.06 dB here; CBSD68 at sigma 25: 29.89 against 29.72)
    assert rep["metrics"]["psnr"] > named["metrics"]["psnr"] + 0.2
    # the same certificate: trained inside the wrapper, the colour model is the gray architecture
    assert rep["denoiser"]["certificate"]["lipschitz"] == 1.0
    assert rep["denoiser"]["certificate"]["averagedness"] < 1


def _deblur_quick_colour_layout(root):
    """A shared-data layout with one CBSD68 image (the 256x256 crop of deblur-quick) and one kernel."""
    from PIL import Image

    denoising = root / "denoising"
    (denoising / "cbsd68").mkdir(parents=True)
    (root / "kernels" / "npy").mkdir(parents=True)
    Image.fromarray(_colour_scene(256).mul(255).round().byte().permute(1, 2, 0).numpy()).save(
        denoising / "cbsd68" / "0000.png")
    (denoising / "cbsd68_index.csv").write_text("bsd68_gray_file,cbsd68_file\ntest001.png,0000.png\n")
    np.save(root / "kernels" / "npy" / "box3.npy", np.full((3, 3), 1 / 9))


def test_deblur_quick_bench_runs_a_colour_model_as_it_is_and_a_gray_one_in_either_mode(tmp_path, capsys):
    import json

    from pnp_stable.denoisers import save_denoiser
    from bench_loader import load_bench_script

    data = tmp_path / "data"
    _deblur_quick_colour_layout(data)
    gray = tiny_gray().float()
    cert = {"lipschitz": gray.certificate().lipschitz, "averagedness": gray.certificate().averagedness}
    save_denoiser(gray, tmp_path / "tiny.pt", {"channels": 1, "certificate": cert})
    save_denoiser(gray, tmp_path / "tiny-color.pt", {"channels": 3, "color": {"mode": "opponent"}, "certificate": cert})
    bench = load_bench_script("bench_deblur_quick")
    common = ["--data", str(data), "--images", "test001", "--kernels", "box3", "--max-iter", "3", "--method", "admm"]

    summaries = {}
    for name, colour in (("tiny-color", "opponent"), ("tiny", "opponent"), ("tiny", "per-channel")):
        out = tmp_path / f"{name}-{colour}.json"
        assert bench.main(["--denoiser", str(tmp_path / f"{name}.pt"), "--color", colour, "--json", str(out), *common]) == 0
        report = json.loads(out.read_text())
        summaries[name, colour] = report["summary"]
        assert report["summary"]["runs"] == 1 and report["summary"]["proven"]
        assert 10 < report["runs"][0]["psnr"] < 60
    assert summaries["tiny-color", "opponent"]["denoiser"].endswith("(a colour model)")
    assert summaries["tiny", "opponent"]["denoiser"].endswith("in opponent colour space")
    assert summaries["tiny", "per-channel"]["denoiser"].endswith("R, G, B as three gray problems")
    # the colour model file is the gray weights inside the opponent denoiser: the same restoration
    assert summaries["tiny-color", "opponent"]["mean_psnr"] == pytest.approx(summaries["tiny", "opponent"]["mean_psnr"], abs=1e-9)

    assert summaries["tiny-color", "opponent"]["noise"] == 0.01  # the protocol's
    noisier = tmp_path / "noisier.json"
    assert bench.main(["--denoiser", str(tmp_path / "tiny-color.pt"), "--color", "opponent", "--noise", "0.05",
                       "--json", str(noisier), *common]) == 0
    report = json.loads(noisier.read_text())
    assert report["summary"]["noise"] == 0.05
    assert report["summary"]["mean_psnr"] < summaries["tiny-color", "opponent"]["mean_psnr"] - 0.1

    capsys.readouterr()
    assert bench.main(["--denoiser", str(tmp_path / "tiny-color.pt"), "--color", "per-channel", *common]) == 2
    assert "is a colour model" in capsys.readouterr().err

    # --rule: a calibration file's rule replaces the model's own (sigma_den = ratio * sigma^q)
    calibration = tmp_path / "calibrated.json"
    calibration.write_text(json.dumps({"method": "admm", "rule": {"weight": 1.0, "exponent": 2.0, "sigma_ratio": 0.5,
                                                                   "sigma_exponent": 0.5, "gamma_scale": 1.0}}))
    ruled = tmp_path / "ruled.json"
    assert bench.main(["--denoiser", str(tmp_path / "tiny-color.pt"), "--color", "opponent", "--rule", str(calibration),
                       "--json", str(ruled), *common]) == 0
    report = json.loads(ruled.read_text())
    assert report["summary"]["rule"]["file"] == str(calibration) and report["summary"]["rule"]["sigma_exponent"] == 0.5
    run = report["runs"][0]
    assert run["parameters"]["sigma_den"] == pytest.approx(0.5 * run["noise_level"] ** 0.5, rel=1e-6)
    assert summaries["tiny-color", "opponent"].get("rule") == "the denoiser's"
    capsys.readouterr()
    assert bench.main(["--denoiser", str(tmp_path / "tiny-color.pt"), "--color", "opponent", "--rule", str(calibration),
                       *common[:-2], "--method", "fb"]) == 2
    assert "calibrates 'admm', not 'fb'" in capsys.readouterr().err


def test_the_dtype_contract_is_the_gray_models_own():
    """Our gray model's weights set the dtype (a one-line refusal of float64 with float32 weights);
    a foreign gray model that casts its input itself is not second-guessed."""
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="weights are torch.float32 and the image torch.float64"):
        OpponentColorDenoiser(tiny_gray().float())(x, 0.05)

    class Casting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, z, sigma):
            return (z.float() * self.scale).to(z.dtype)

    assert OpponentColorDenoiser(Casting())(x, 0.05).dtype == torch.float64
    with pytest.raises(ValueError, match="real floating-point images"):
        OpponentColorDenoiser(Casting())((x * 255).to(torch.uint8), 0.05)

