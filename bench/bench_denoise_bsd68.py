"""denoise-bsd68 (DESIGN.md §5): PSNR of denoisers on the 68 BSD68 gray images at sigma 15/25/50.

    python bench/bench_denoise_bsd68.py [MODEL ...] [--data ../shared/data] [--limit N]
        [--sigmas 15 25 50] [--out runs/bench_denoise_bsd68.json] [--threads 1]
        [--color opponent per-channel] [--estimate-noise]

``--color MODE ...`` runs the same protocol on the 68 colour images of CBSD68 (the same scenes,
``denoising/cbsd68``) with gray MODELs turned into colour denoisers: ``opponent`` (the certified
opponent-colour wrapper, :class:`pnp_stable.denoisers.OpponentColorDenoiser`) and ``per-channel``
(R, G, B denoised independently); one row per model and mode, next to colour anchors. A colour
MODEL (one that takes RGB images, e.g. the shipped ``color``) runs as it is, in one row.

MODEL is a shipped name (see ``pnp_stable.denoisers.available()``) or a path to an exported
``.pt`` (e.g. the unconstrained baseline); default: every shipped model (the gray ones without
``--color``). Noise: for each sigma a
generator seeded with 0 draws the noise of the images in sorted order; PSNR (peak 1) of the
estimate clipped to [0, 1], deepinv's metric. The table puts the anchors of DESIGN.md §3 next to
the measured rows; ``--limit`` evaluates only the first images (a quick check, not the protocol).

``--estimate-noise`` hands each denoiser the noise level estimated from the noisy image (what
``pnp-stable denoise`` does without ``--noise``: :func:`pnp_stable.solvers.estimate_noise_level`)
instead of the true one, and records the estimates' error: the price of not knowing the level.

``--reference-dncnn`` also measures KAIR's DnCNN (sigma 25, ``weights/KAIR/model_zoo/dncnn_25.pth``
of the shared data, loaded into deepinv's DnCNN) at sigma 25 only: a cross-check that this
protocol reproduces the DnCNN anchor. Those weights are for comparison only, never shipped.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"

# DESIGN.md §3, BSD68 gray, PSNR dB at sigma 15 / 25 / 50 (None: not quoted)
ANCHORS = {
    "BM3D": {"15": 31.07, "25": 28.57, "50": 25.62},
    "DnCNN": {"15": 31.73, "25": 29.23, "50": 26.23},
    "DRUNet": {"15": 31.91, "25": 29.48, "50": 26.59},
    "CRR-NN (certified, convex)": {"15": None, "25": 28.1, "50": None},
    "averaged CNN (I+N)/2 (certified)": {"15": None, "25": 27.67, "50": None},
}

# CBSD68, PSNR dB at sigma 15 / 25 / 50, as quoted in Zhang et al., "Plug-and-Play Image Restoration
# with Deep Denoiser Prior" (DRUNet), TPAMI 2022, Table 3 (not measured here)
COLOR_ANCHORS = {
    "CBM3D": {"15": 33.52, "25": 30.71, "50": 27.38},
    "DRUNet (colour)": {"15": 34.30, "25": 31.69, "50": 28.51},
}


def colour_denoiser(model: torch.nn.Module, mode: str):
    """``(x, sigma) -> estimate`` for ``B x 3 x H x W`` images from a gray ``model`` in ``mode``."""
    if mode == "opponent":
        from pnp_stable.denoisers import OpponentColorDenoiser

        return OpponentColorDenoiser(model)
    return lambda x, s: model(x.reshape(-1, 1, *x.shape[-2:]), s).reshape(x.shape)


def kair_dncnn25(data: Path) -> torch.nn.Module:
    """KAIR's DnCNN sigma-25 weights in deepinv's DnCNN (17 convs with bias; KAIR predicts the noise,
    deepinv adds its output to the input, so the last layer is negated)."""
    from deepinv.models import DnCNN

    state = torch.load(data / "weights" / "KAIR" / "model_zoo" / "dncnn_25.pth", map_location="cpu", weights_only=True)
    model = DnCNN(in_channels=1, out_channels=1, depth=17, bias=True, nf=64, pretrained=None)
    mapped = {"in_conv.weight": state["model.0.weight"], "in_conv.bias": state["model.0.bias"],
              "out_conv.weight": -state["model.32.weight"], "out_conv.bias": -state["model.32.bias"]}
    for i in range(15):
        mapped[f"conv_list.{i}.weight"] = state[f"model.{2 * (i + 1)}.weight"]
        mapped[f"conv_list.{i}.bias"] = state[f"model.{2 * (i + 1)}.bias"]
    model.load_state_dict(mapped)
    return model.eval()


class EstimatedLevel:
    """``(x, sigma) -> denoiser(x, sigma estimated from x)``, keeping each (true, estimated) pair."""

    def __init__(self, denoiser) -> None:
        self.denoiser, self.pairs = denoiser, []

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        from pnp_stable.solvers import estimate_noise_level

        (level,) = estimate_noise_level(x)
        self.pairs.append((float(sigma), level))
        return self.denoiser(x, level)

    def error_summary(self) -> dict[str, dict[str, float]]:
        """Per true level (0-255): the estimates' median ratio to it and their range."""
        import statistics

        by_sigma: dict[str, list[float]] = {}
        for sigma, level in self.pairs:
            by_sigma.setdefault(f"{sigma * 255:g}", []).append(level / sigma)
        return {s: {"median_ratio": statistics.median(r), "min_ratio": min(r), "max_ratio": max(r)}
                for s, r in by_sigma.items()}


def _table(rows: dict[str, dict], sigmas: list[str]) -> str:
    head = "| model | certified alpha | " + " | ".join(f"sigma {s}" for s in sigmas) + " | s/image |"
    lines = [head, "|" + "---|" * (len(sigmas) + 3)]
    for name, row in rows.items():
        vals = " | ".join("—" if row["psnr"].get(s) is None else f"{row['psnr'][s]:.2f}" for s in sigmas)
        alpha = row.get("alpha")
        alpha_text = "—" if alpha is None else f"{alpha:.6f}"
        per_image = row.get("seconds_per_image")
        lines.append(f"| {name} | {alpha_text} | {vals} | {'—' if per_image is None else f'{per_image:.2f}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[15.0, 25.0, 50.0])
    parser.add_argument("--out", default=None, help="write the results as JSON here (atomically)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (the protocol's noise is drawn on the CPU)")
    parser.add_argument("--reference-dncnn", action="store_true", help="also measure KAIR DnCNN-25 at sigma 25")
    parser.add_argument("--estimate-noise", action="store_true",
                        help="hand the denoisers the noise level estimated from each noisy image, not the true one")
    parser.add_argument("--color", nargs="+", choices=["opponent", "per-channel"], default=None, metavar="MODE",
                        help="CBSD68 (colour) with gray models in these modes: opponent, per-channel")
    args = parser.parse_args(argv)
    if args.color and args.reference_dncnn:
        print("error: --reference-dncnn measures the gray protocol; drop it or --color", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)

    from pnp_stable.denoisers import available, load
    from pnp_stable.fileio import atomic_write_json
    from pnp_stable.layers import certificate_of
    from pnp_stable.protocols import denoiser_channels
    from pnp_stable.training.evaluate import denoise_bsd68

    folder = Path(args.data) / "denoising" / ("cbsd68" if args.color else "bsd68")
    if not folder.is_dir():
        print(f"error: {'CBSD68' if args.color else 'BSD68'} folder not found: {folder}", file=sys.stderr)
        return 2
    # by default every shipped model the protocol fits: colour models only on CBSD68
    names = args.models or [m["name"] for m in available() if args.color or m.get("channels") != 3]
    if not names and not args.reference_dncnn:
        print("error: no model given and none shipped", file=sys.stderr)
        return 2
    sigmas = [f"{s:g}" for s in args.sigmas]
    rows: dict[str, dict] = {}
    for name in names:
        try:
            model = load(name)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        model = model.to(args.device)
        channels = denoiser_channels(model) or 1
        if channels == 3 and not args.color:
            print(f"error: {name} is a colour model: measure it on CBSD68 with --color opponent", file=sys.stderr)
            return 2
        if channels not in (1, 3):
            print(f"error: {name} takes {channels} channels; this benchmark measures gray or RGB models",
                  file=sys.stderr)
            return 2
        # a colour model (e.g. a gray one trained inside the opponent-colour denoiser) runs as it is
        modes = [None] if channels == 3 else (args.color or [None])
        for mode in modes:
            denoiser = model if mode is None else colour_denoiser(model, mode)
            cert = certificate_of(denoiser) if isinstance(denoiser, torch.nn.Module) else certificate_of(model)
            estimated = EstimatedLevel(denoiser) if args.estimate_noise else None
            tic = time.time()
            result = denoise_bsd68(estimated or denoiser, str(folder), args.sigmas, limit=args.limit,
                                   device=args.device, progress=True, channels=3 if args.color else 1)
            seconds = time.time() - tic
            label = ((Path(name).stem if name.endswith(".pt") else name) + (f" ({mode})" if mode else "")
                     + (" (estimated level)" if estimated else ""))
            rows[label] = {
                "psnr": result["psnr"], "noisy_psnr": result["noisy_psnr"], "images": result["images"],
                "alpha": None if cert is None else cert.averagedness,
                "lipschitz": None if cert is None else cert.lipschitz,
                "seconds_per_image": seconds / (result["images"] * len(args.sigmas)),
            }
            if estimated:
                rows[label]["estimated_level"] = estimated.error_summary()
                print(f"{label}: estimated / true level: " + ", ".join(
                    f"sigma {s}: median {e['median_ratio']:.3f} [{e['min_ratio']:.3f}, {e['max_ratio']:.3f}]"
                    for s, e in rows[label]["estimated_level"].items()), flush=True)
            print(f"{label}: " + ", ".join(f"sigma {s}: {v:.2f} dB" for s, v in result["psnr"].items()), flush=True)
    if args.reference_dncnn:
        reference = kair_dncnn25(Path(args.data))
        tic = time.time()
        result = denoise_bsd68(lambda x, s: reference(x), str(folder), [25.0], limit=args.limit, progress=True)
        rows["KAIR DnCNN-25 (reference weights, not shipped)"] = {
            "psnr": result["psnr"], "noisy_psnr": result["noisy_psnr"], "images": result["images"], "alpha": None,
            "lipschitz": None, "seconds_per_image": (time.time() - tic) / result["images"]}
        print(f"KAIR DnCNN-25: sigma 25: {result['psnr']['25']:.2f} dB", flush=True)
    anchors = COLOR_ANCHORS if args.color else ANCHORS
    table_rows = {**rows, **{f"{k} (anchor)": {"psnr": v} for k, v in anchors.items()}}
    print(_table(table_rows, sigmas))
    if args.out:
        atomic_write_json(args.out, {
            "protocol": "denoise-cbsd68" if args.color else "denoise-bsd68", "limit": args.limit,
            "sigmas": args.sigmas, "estimate_noise": args.estimate_noise, "results": rows, "anchors": anchors, "machine": f"{platform.machine()} {platform.processor()}".strip(),
            "threads": args.threads, "device": args.device, "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
        }, make_parents=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
