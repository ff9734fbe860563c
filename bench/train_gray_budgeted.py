"""Train, export and benchmark a certified gray denoiser inside a fixed wall-clock allowance.

Made for borrowed accelerators with a hard time budget (a GPU lent for minutes, a cluster slot):
the schedule must *end* inside the allowance, or the model is cut off at a high learning rate.
So the run is sized rather than guessed:

1. a probe of ``--probe-steps`` steps measures the seconds per step of this model on this machine;
2. the real run gets ``steps = training seconds / (seconds per step * --slowdown)`` (sub-steps grow
   as the weights' norms grow, so later steps are slower than the probe's), with warm-up, certified
   fine-tuning and validation scaled to it, and ``time_limit`` as a safety net (it stops with a
   resumable checkpoint if the estimate was optimistic);
3. the checkpoint is exported (certified sub-step counts frozen, certificate in the metadata) and
   the exported file is measured by the denoise-bsd68 protocol on the same device.

Everything it writes goes to ``--out`` (checkpoint, log, exported model and metadata, BSD68 JSON,
a summary). Finish on a CPU machine with ``python -m pnp_stable.training.export OUT/checkpoint.pt
gray --bsd68-json OUT/bsd68.json:gray-budgeted ...`` to add the adversarial certificate check.

Example (the device run of docs/training.md)::

    python bench/train_gray_budgeted.py --data .data --device cuda --minutes 7 --out "$OUT"
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def _steps_per_second(log: Path, skip: int) -> float:
    """Training speed from a run's log, ignoring the first ``skip`` steps (start-up, autotuning)."""
    records = [json.loads(line) for line in log.read_text().splitlines()]
    train = [r for r in records if r.get("event") == "train"]
    late = [r for r in train if r["step"] > skip]
    if not late:
        raise RuntimeError("the probe logged no step after its warm-up; raise --probe-steps")
    first = max((r for r in train if r["step"] <= skip), key=lambda r: r["step"], default=None)
    if first is None:
        return late[-1]["step"] / late[-1]["elapsed"]
    return (late[-1]["step"] - first["step"]) / (late[-1]["elapsed"] - first["elapsed"])


def plan_steps(train_seconds: float, seconds_per_step: float, slowdown: float) -> dict[str, int]:
    """Schedule that fits ``train_seconds``: steps, warm-up, certified fine-tuning, checkpoints."""
    steps = max(20, int(train_seconds / (seconds_per_step * slowdown)))
    return {
        "steps": steps,
        "warmup_steps": max(1, steps // 20),
        "certified_finetune_steps": max(1, steps // 10),
        "val_every": steps,  # one validation, at the end (the budget is for training)
        "checkpoint_every": max(10, steps // 20),
        "log_every": max(1, min(100, steps // 50)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="root holding denoising/bsds500 and denoising/bsd68 (default ../shared/data)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="gray-gpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="preset overrides")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--minutes", type=float, required=True, help="the whole allowance, probe to benchmark")
    parser.add_argument("--reserve-minutes", type=float, default=1.5,
                        help="kept for export and the BSD68 benchmark after training")
    parser.add_argument("--probe-steps", type=int, default=40)
    parser.add_argument("--slowdown", type=float, default=1.5,
                        help="expected late-run step time over the probe's (sub-steps grow with the norms)")
    parser.add_argument("--name", default="gray-budgeted")
    args = parser.parse_args(argv)
    start = time.monotonic()

    import torch

    from pnp_stable.training.export import export_denoiser
    from pnp_stable.training.loop import train_denoiser
    from pnp_stable.training.presets import preset
    from pnp_stable.training.run import parse_overrides

    train_dir = args.data / "denoising" / "bsds500"
    val_dir = args.data / "denoising" / "bsd68"
    for folder in (train_dir, val_dir):
        if not folder.is_dir():
            print(f"error: data folder not found: {folder}", file=sys.stderr)
            return 2
    try:
        overrides = parse_overrides(args.set)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = args.out / "run"

    def config(run: Path, **fields):
        values = {**overrides, **fields}
        model = values.pop("model", None) or {}
        values.setdefault("progress", False)
        return preset(args.preset, [str(train_dir)], str(run), val_dir=str(val_dir), device=device,
                      model=model, **values)

    # 1. probe
    with tempfile.TemporaryDirectory() as probe_dir:
        probe = config(Path(probe_dir) / "probe", steps=10 ** 6, log_every=5, val_every=10 ** 9,
                       checkpoint_every=10 ** 9)
        train_denoiser(probe, stop_after=args.probe_steps)
        speed = _steps_per_second(Path(probe_dir) / "probe" / "log.jsonl", skip=min(10, args.probe_steps // 4))
    seconds_per_step = 1.0 / speed

    # 2. the sized run
    elapsed = time.monotonic() - start
    train_seconds = 60.0 * (args.minutes - args.reserve_minutes) - elapsed
    if train_seconds <= 0:
        print(f"error: the probe used the allowance ({elapsed:.0f} s); give more --minutes", file=sys.stderr)
        return 2
    plan = plan_steps(train_seconds, seconds_per_step, args.slowdown)
    print(json.dumps({"probe_seconds_per_step": seconds_per_step, "train_seconds": train_seconds, **plan}),
          flush=True)
    result = train_denoiser(config(run_dir, **plan), time_limit=train_seconds)

    # 3. export and measure on this device
    description = (f"certified gray denoiser, {args.preset} preset, {result.step}/{plan['steps']} steps in "
                   f"{train_seconds / 60:.1f} min on {torch.cuda.get_device_name() if device == 'cuda' else device}")
    exported = export_denoiser(run_dir / "checkpoint.pt", args.name, dest_dir=args.out, description=description,
                               empirical_check=False)
    sys.path.insert(0, str(REPO / "bench"))
    from bench_denoise_bsd68 import main as bsd68_main

    code = bsd68_main([str(exported), "--data", str(args.data), "--device", device,
                       "--out", str(args.out / "bsd68.json")])
    summary = {"steps_done": result.step, "plan": plan, "probe_seconds_per_step": seconds_per_step,
               "best_validation": result.best_validation, "device": device, "minutes_used":
               (time.monotonic() - start) / 60, "bsd68_exit_code": code}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    # keep what travels back small: the final checkpoint and log, not the best-of copy
    (run_dir / "best.pt").unlink(missing_ok=True)
    print(json.dumps(summary), flush=True)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
