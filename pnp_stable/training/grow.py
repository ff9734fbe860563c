"""Deepen a trained certified denoiser: insert gradient-flow blocks that start close to the identity.

On a CPU budget depth buys more than sub-steps (docs/training.md), but a deeper model trained
from scratch throws away the hours already spent on a shallower one. :func:`grow_denoiser` keeps
every trained block, in order, with its sigma-conditioned bias and integration-time rows, and
spreads new blocks between them. A new block's convolution starts at ``fresh_weight_scale`` times
a fresh initialisation, so its step ``x - h A^T s(Ax + b)`` moves ``x`` by ``O(||A||)``: the grown
network starts within a small distance of the trained one and training continues from there
(``--set init_from=GROWN.pt``).

The certificate is unaffected by construction: every block, old or new, is a capped or adaptive
gradient step of a convex potential and the model recomputes its constants from certified norm
bounds; more blocks only move the composed averagedness closer to (never past) 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pnp_stable.denoisers import CertifiedDenoiser, DenoiserConfig, build_denoiser, load, save_denoiser

__all__ = ["grow_denoiser", "grown_positions", "main"]


def grown_positions(old_blocks: int, new_blocks: int) -> list[int]:
    """Where the trained blocks go in the grown stack: ``floor(i * new / old)``, strictly
    increasing (``new >= old``), so the new blocks fall evenly between the old ones."""
    if old_blocks < 1 or new_blocks <= old_blocks:
        raise ValueError(f"cannot grow {old_blocks} blocks to {new_blocks}: the new count must be larger")
    return [i * new_blocks // old_blocks for i in range(old_blocks)]


def grow_denoiser(model: CertifiedDenoiser, blocks: int, fresh_weight_scale: float = 1e-2,
                  seed: int = 0) -> CertifiedDenoiser:
    """A copy of ``model`` with ``blocks`` gradient-flow blocks, the trained ones kept in order.

    New blocks get a fresh convolution scaled by ``fresh_weight_scale``, a zero sigma-conditioned
    bias shift and, with time conditioning, the full integration time (the initial logit of a new
    model); their power-method state is reset so training re-estimates their norms. The returned
    model is in train mode with unfrozen sub-step counts. Raises ValueError for an unconstrained
    model, strided blocks (their positions carry the multi-scale layout) or a non-increasing count.
    """
    if not isinstance(model, CertifiedDenoiser):
        raise ValueError("only certified denoisers can be grown (the baseline has no flow blocks to keep)")
    old_config = model.config
    if any(stride != 1 for stride in old_config.block_strides):
        raise ValueError("growing a model with strided blocks is not supported: their places define the scales")
    if not 0.0 < fresh_weight_scale <= 1.0:
        raise ValueError(f"fresh_weight_scale must lie in (0, 1], got {fresh_weight_scale}")
    positions = grown_positions(old_config.blocks, blocks)
    new_config = DenoiserConfig.from_dict({**old_config.to_dict(), "blocks": blocks})
    with torch.random.fork_rng():  # a seeded initialisation without touching the caller's generator
        torch.manual_seed(seed)
        grown = build_denoiser(new_config)
    assert isinstance(grown, CertifiedDenoiser)

    old_state, new_state = model.state_dict(), grown.state_dict()
    # the last layer of each embedding has one row (group) per block: those rows move with the blocks
    sigma_head = f"embedding.mlp.{len(model.embedding.mlp) - 1}" if model.embedding is not None else None
    time_head = (f"time_embedding.mlp.{len(model.time_embedding.mlp) - 1}"
                 if model.time_embedding is not None else None)
    kept = set(positions)
    with torch.no_grad():
        for key, value in old_state.items():
            parts = key.split(".")
            if parts[0] == "network":
                index = int(parts[1])
                if index == 0:
                    target = index  # the lift
                elif index == old_config.blocks + 1:
                    target = blocks + 1  # the projection
                else:
                    target = positions[index - 1] + 1
                new_state[".".join(["network", str(target), *parts[2:]])] = value.clone()
            elif key.rsplit(".", 1)[0] == sigma_head and old_config.sigma_conditioning:
                new_state[key] = _spread_rows(value, new_state[key], positions, old_config.hidden, False)
            elif key.rsplit(".", 1)[0] == time_head:
                new_state[key] = _spread_rows(value, new_state[key], positions, 1, True)
            else:
                new_state[key] = value.clone()
        for j in range(blocks):
            if j in kept:
                continue
            prefix = f"network.{j + 1}."
            new_state[prefix + "linear.weight"] = new_state[prefix + "linear.weight"] * fresh_weight_scale
            new_state[prefix + "linear.norm_estimate"] = torch.zeros(())  # next estimate starts from scratch
    grown.load_state_dict(new_state)
    grown.unfreeze_substeps()
    grown.train()
    return grown


def _spread_rows(old: torch.Tensor, fresh: torch.Tensor, positions: list[int], rows_per_block: int,
                 keep_fresh_bias: bool) -> torch.Tensor:
    """An embedding head's rows for the grown model: each old block's rows move to its new place,
    rows past the blocks (the relaxation logit) stay at the end. A new block's rows get zero
    weights (no sigma dependence yet) and a zero bias, or ``fresh``'s bias with
    ``keep_fresh_bias`` (the initial time logit: full integration time)."""
    tail = len(old) - rows_per_block * len(positions)
    out = fresh.clone()
    if old.ndim > 1 or not keep_fresh_bias:
        out.zero_()
    for i, j in enumerate(positions):
        out[j * rows_per_block:(j + 1) * rows_per_block] = old[i * rows_per_block:(i + 1) * rows_per_block]
    if tail:
        out[-tail:] = old[-tail:]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m pnp_stable.training.grow SOURCE DEST --blocks N``: write the grown model to DEST."""
    parser = argparse.ArgumentParser(prog="python -m pnp_stable.training.grow", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="shipped model name or .pt file to grow")
    parser.add_argument("dest", help="where to write the grown model (.pt); never overwritten")
    parser.add_argument("--blocks", type=int, required=True, help="gradient-flow blocks of the grown model")
    parser.add_argument("--fresh-weight-scale", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        dest = Path(args.dest)
        if dest.exists():
            raise ValueError(f"{dest} exists; choose another destination")
        source = load(args.source)
        grown = grow_denoiser(source, args.blocks, args.fresh_weight_scale, args.seed)
        grown_from = {"source": str(args.source), "blocks": source.config.blocks,
                      "positions": grown_positions(source.config.blocks, args.blocks),
                      "fresh_weight_scale": args.fresh_weight_scale}
        save_denoiser(grown, dest, metadata={"grown_from": grown_from})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {dest}: {args.blocks} blocks ({source.config.blocks} trained, kept in order)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
