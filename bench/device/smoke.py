"""Every device-dependent path of pnp-stable once, on tiny inputs, on the device named.

No GPU had run this code when it was written, and the unit tests run on the CPU, so a device
mismatch (a tensor created on the CPU, a cache keyed without the device, reduced precision where a
certificate or the residual monitor needs float32) would surface only on a borrowed GPU, after
minutes of training. Run this first there (about a minute, no pytest needed):

    python bench/device/smoke.py --device cuda

Each check prints ``ok NAME (seconds)`` or the traceback of its failure; the exit code is 1 if any
check failed. ``--device cpu`` runs the same checks here (tests/test_device_smoke.py does).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

class Context(NamedTuple):
    device: torch.device
    work: Path  # an empty folder of the check's own
    denoiser: str  # the denoiser the restoration checks use: a shipped name or a saved file
    trained: bool  # a shipped (trained) denoiser: restorations must then beat their input


CHECKS: list[Callable[[Context], None]] = []


def check(fn: Callable[[Context], None]) -> Callable[[Context], None]:
    CHECKS.append(fn)
    return fn


def _camera(size: int) -> torch.Tensor:
    from skimage import data

    img = data.camera()[200:200 + size, 220:220 + size].astype(np.float32) / 255.0
    return torch.from_numpy(img)[None, None]


def _tiny_denoiser():
    from pnp_stable.denoisers import DenoiserConfig, build_denoiser

    torch.manual_seed(0)
    return build_denoiser(DenoiserConfig(width=4, hidden=6, blocks=3, embedding_dim=8, time_conditioning=True))


def _write_images(folder: Path, count: int, size: int, rgb: bool = False, seed: int = 0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        img = sum(rng.uniform(-1, 1) * np.exp(-((yy - rng.uniform(0, size)) ** 2 + (xx - rng.uniform(0, size)) ** 2)
                                              / (2 * rng.uniform(3, 10) ** 2)) for _ in range(5))
        arr = (255 * (img - img.min()) / (np.ptp(img) + 1e-9)).astype(np.uint8)
        if rgb:
            arr = np.stack([arr, arr[::-1], arr[:, ::-1]], axis=-1)
        Image.fromarray(arr).save(folder / f"img_{i:02d}.png")
    return folder


@check
def certificates_do_not_depend_on_the_device(ctx: Context) -> None:
    from pnp_stable.denoisers import load

    device = ctx.device
    model = _tiny_denoiser().eval()
    on_cpu = model.certificate()
    on_device = model.to(device).certificate()
    assert abs(on_device.lipschitz - on_cpu.lipschitz) <= 1e-9 and \
        abs(on_device.averagedness - on_cpu.averagedness) <= 1e-9, (on_cpu, on_device)
    loaded = load(ctx.denoiser, device=device)  # load() re-derives the certificate from the weights
    assert next(loaded.parameters()).device.type == device.type


@check
def denoiser_and_its_tiles_agree_with_the_cpu(ctx: Context) -> None:
    from pnp_stable.denoisers import TiledDenoiser, load

    device = ctx.device
    x = _camera(96)
    noisy = (x + 15 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    denoiser = load(ctx.denoiser)
    with torch.no_grad():
        reference = denoiser(noisy, 15 / 255)
        denoiser = denoiser.to(device)
        whole = denoiser(noisy.to(device), 15 / 255)
        tiled = TiledDenoiser(denoiser, tile=48)(noisy.to(device), 15 / 255)
    assert (whole.cpu() - reference).abs().max() < 1e-3, float((whole.cpu() - reference).abs().max())
    assert (tiled - whole).abs().max() < 1e-4, float((tiled - whole).abs().max())


@check
def solves_agree_with_the_cpu_and_stay_monotone(ctx: Context) -> None:
    from pnp_stable.denoisers import load
    from pnp_stable.operators import Blur
    from pnp_stable.solvers import solve

    device = ctx.device
    x = _camera(64)
    op = Blur("gauss:1.6", (1, 64, 64))
    y = op.simulate(x, noise_level=2.55 / 255, seed=0)
    denoiser = load(ctx.denoiser)
    for method in ("fb", "admm"):
        cpu = solve(y, op, denoiser, method=method, max_iter=25, x_true=x, progress=False)
        # x_true stays on the CPU on purpose: solve moves it
        dev = solve(y.to(device), op, denoiser.to(device), method=method, max_iter=25, x_true=x, progress=False)
        denoiser = denoiser.cpu()
        assert dev.guarantee.holds and dev.monotone, (method, dev.monotonicity_violations)
        gap = abs(dev.history[-1]["psnr"][0] - cpu.history[-1]["psnr"][0])
        assert gap < 0.02, (method, dev.history[-1]["psnr"], cpu.history[-1]["psnr"])


@check
def deblur_with_a_cg_prox_on_the_device(ctx: Context) -> None:
    from pnp_stable.restore import deblur

    device = ctx.device
    x = _camera(64)[0]
    for boundary in ("circular", "reflect"):
        r = deblur(x, "gauss:1.6", simulate=True, boundary=boundary, method="admm", denoiser=ctx.denoiser,
                   max_iter=15, device=str(device), progress=False)
        assert r.result.guarantee.holds and r.result.monotone, boundary
        metrics = r.report["metrics"]
        assert metrics["psnr"] > metrics["psnr_input"] + 1 or not ctx.trained, (boundary, metrics)


@check
def ct_operator_and_reconstruction_on_the_device(ctx: Context) -> None:
    from pnp_stable.operators import ParallelBeamCT
    from pnp_stable.restore import reconstruct_ct

    device = ctx.device
    op = ParallelBeamCT(32, angles=12)
    for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-10)):
        for where in (device, torch.device("cpu"), device):  # back and forth: one backend per device
            g = torch.Generator().manual_seed(1)
            x = torch.rand(1, 1, 32, 32, generator=g, dtype=dtype).to(where)
            z = torch.rand(op.A(x).shape, generator=g, dtype=dtype).to(where)
            lhs, rhs = float((op.A(x) * z).sum()), float((x * op.A_adjoint(z)).sum())
            assert abs(lhs - rhs) <= tol * abs(lhs), (dtype, where, lhs, rhs)
    from skimage import data, transform

    phantom = torch.from_numpy(transform.resize(data.shepp_logan_phantom(), (64, 64)).astype(np.float32))[None]
    r = reconstruct_ct(phantom, angles=30, simulate=True, method="admm", denoiser=ctx.denoiser, max_iter=8,
                       device=str(device), progress=False)
    assert r.result.guarantee.holds and r.result.guarantee.proven and r.result.monotone
    assert r.report["metrics"]["psnr"] > r.report["metrics"]["psnr_input"] or not ctx.trained


@check
def training_validation_resume_colour_and_export(ctx: Context) -> None:
    from pnp_stable.denoisers import load
    from pnp_stable.training import export_denoiser, preset, train_denoiser
    from pnp_stable.training.checkpoint import load_checkpoint

    device, work = ctx.device, ctx.work
    images_dir = _write_images(work / "train", 6, 48)
    val_dir = _write_images(work / "val", 2, 48, seed=9)
    common = dict(val_dir=str(val_dir), device=device.type, progress=False)
    run = work / "run"
    config = preset("tiny", [str(images_dir)], str(run), steps=3, val_every=3, model={"time_conditioning": True},
                    **common)
    train_denoiser(config)
    resumed = preset("tiny", [str(images_dir)], str(run), steps=4, val_every=4, resume=True,
                     model={"time_conditioning": True}, **common)
    assert train_denoiser(resumed).step == 4
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 4
    exported = export_denoiser(run / "checkpoint.pt", "smoke", dest_dir=work / "export")
    assert load(exported).certificate().lipschitz <= 1.0 + 1e-9
    rgb_dir = _write_images(work / "train_rgb", 4, 48, rgb=True)
    colour = preset("tiny", [str(rgb_dir)], str(work / "run_rgb"), steps=2, val_every=2, color="opponent",
                    val_dir=str(_write_images(work / "val_rgb", 2, 48, rgb=True, seed=3)), device=device.type,
                    progress=False)
    assert train_denoiser(colour).step == 2


@check
def classifier_training_and_robustness_evaluation(ctx: Context) -> None:
    from pnp_stable.classify.datasets import load_dataset
    from pnp_stable.classify.evaluation import PGDConfig, evaluate
    from pnp_stable.classify.training import TrainConfig, train_classifier

    device, work = ctx.device, ctx.work
    for split in ("train", "test"):
        for label in ("a", "b"):
            _write_images(work / "classes" / split / label, 8, 12, seed=hash((split, label)) % 1000)
    config = TrainConfig(dataset="image_folder", data_path=str(work / "classes"), output_dir=str(work / "clf"),
                         model={"widths": [4, 8], "blocks_per_stage": [1, 1]}, epochs=1, batch_size=8,
                         device=device.type, progress=False)
    result = train_classifier(config)
    assert result.certified_lipschitz <= 1.0 + 1e-6 and (work / "clf" / "model.pt").exists()
    data = load_dataset("image_folder", str(work / "classes"), "test")
    report = evaluate(result.model, data, eps=[0.5], pgd=PGDConfig(steps=3), progress=False)
    assert 0.0 <= report.clean_accuracy <= 1.0


@check
def adversarial_lipschitz_search_respects_the_certificate(ctx: Context) -> None:
    from pnp_stable.verification import empirical_lipschitz

    device = ctx.device
    model = _tiny_denoiser().eval().double().to(device)  # the search runs in float64
    bound = model.certificate().lipschitz
    for p in model.parameters():
        p.requires_grad_(False)
    found = empirical_lipschitz(lambda z: model(z, 0.1), (1, 12, 12), restarts=1, steps=10, n_pairs=4,
                                device=device)
    assert found <= bound * (1 + 1e-6), (found, bound)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the point) or cpu")
    parser.add_argument("--denoiser", default="gray",
                        help="shipped name or saved file for the restoration checks [default: gray]")
    parser.add_argument("--only", nargs="*", help="names (or parts of names) of the checks to run")
    args = parser.parse_args(argv)
    from pnp_stable.denoisers import available

    trained = args.denoiser in available()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: CUDA is not available here", file=sys.stderr)
        return 2
    failed = []
    with tempfile.TemporaryDirectory(prefix="pnp-smoke-") as tmp:
        for fn in CHECKS:
            if args.only and not any(part in fn.__name__ for part in args.only):
                continue
            work = Path(tmp) / fn.__name__
            work.mkdir()
            tic = time.perf_counter()
            try:
                fn(Context(device, work, args.denoiser, trained))
            except Exception:  # noqa: BLE001 - every failure is reported, then the next check runs
                failed.append(fn.__name__)
                print(f"FAILED {fn.__name__}", flush=True)
                traceback.print_exc()
            else:
                print(f"ok {fn.__name__} ({time.perf_counter() - tic:.1f} s)", flush=True)
    print(f"{len(failed)} failed: {', '.join(failed)}" if failed else "all checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
