"""Reshape a trained certified denoiser: grow, prune or revive its blocks, or widen them.

On a CPU budget depth buys more than sub-steps (docs/training-log.md), but a deeper model
trained from scratch throws away the hours already spent on a shallower one.
:func:`grow_denoiser` keeps every trained block, in order, with its sigma-conditioned bias and
integration-time rows, and spreads new blocks between them. A new block's convolution starts at ``fresh_weight_scale`` times
a fresh initialisation, so its step ``x - h A^T s(Ax + b)`` moves ``x`` by ``O(||A||)``: the grown
network starts within a small distance of the trained one and training continues from there
(``--set init_from=GROWN.pt``).

Time-conditioned training can also switch blocks off for good: a block whose learned integration
time ``tau_k(sigma)`` has gone to ~0 at every noise level costs a full convolution pair per call
and contributes nothing (the shipped 24-block ``gray`` has five such blocks, ``tau <= 5e-4``), and
with the sigmoid saturated it gets no gradient to come back. :func:`idle_blocks` finds them;
:func:`prune_denoiser` drops them (the same function up to their tiny steps, at less cost) and
:func:`revive_denoiser` replaces them in place by fresh near-identity blocks with the full
integration time, so that training can put that capacity to use.

At equal training steps width pays (docs/training-log.md, "What binds at equal steps"): twice the
state and potential channels gained about +0.1 dB. :func:`widen_denoiser` gives a trained model
more state channels (``width``) and/or potential channels (``hidden``) while computing nearly the
same function, so the extra capacity is learned on top of the hours already spent: the trained
weights fill the leading slice of every widened tensor, and the new entries start small.

The certificate is unaffected by construction: every block, old or new, is a capped or adaptive
gradient step of a convex potential and the model recomputes its constants from certified norm
bounds; more blocks only move the composed averagedness closer to (never past) 1, fewer blocks
only lower it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path
from typing import Any

import torch

from pnp_stable.denoisers import CertifiedDenoiser, DenoiserConfig, build_denoiser, load, save_denoiser

__all__ = ["grow_denoiser", "grown_positions", "idle_blocks", "prune_denoiser", "prune_idle_blocks", "revive_denoiser",
           "widen_denoiser", "main"]

# a block whose integration time never exceeds this fraction of T is idle
IDLE_TIME_SCALE = 1e-3


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
    model, strided blocks (where new blocks would go between scales is a design choice, not a
    reshape) or a non-increasing count.
    """
    _check_reshapable(model)
    if any(stride != 1 for stride in model.config.block_strides):
        raise ValueError("growing a model with strided blocks is not supported: where new blocks go between "
                         "the scales is a design choice")
    positions = grown_positions(model.config.blocks, blocks)
    return _remap_blocks(model, blocks, dict(enumerate(positions)), fresh_weight_scale, seed)


def idle_blocks(model: CertifiedDenoiser, sigma_min: float, sigma_max: float,
                threshold: float = IDLE_TIME_SCALE, samples: int = 64) -> list[int]:
    """Blocks (0-based) whose integration-time scale ``tau_k(sigma)`` stays below ``threshold`` at
    every one of ``samples`` noise levels spread over ``[sigma_min, sigma_max]`` ([0, 1] scale).

    Such a block moves its input by at most ``threshold`` times one admissible gradient step. A
    model without time conditioning has no idle blocks in this sense.
    """
    if not isinstance(model, CertifiedDenoiser):
        raise ValueError("only certified denoisers have gradient-flow blocks")
    if not 0.0 <= sigma_min <= sigma_max:
        raise ValueError(f"need 0 <= sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    if model.time_embedding is None:
        return []
    device = next(model.time_embedding.parameters()).device
    sigmas = torch.linspace(sigma_min, sigma_max, max(2, samples), dtype=torch.float32, device=device)
    with torch.no_grad():
        largest = torch.sigmoid(model.time_embedding(sigmas)).max(dim=0).values
    return [k for k, tau in enumerate(largest.tolist()) if tau < threshold]


def prune_denoiser(model: CertifiedDenoiser, drop: list[int]) -> CertifiedDenoiser:
    """A copy of ``model`` without the blocks ``drop`` (0-based); the others keep their weights,
    conditioning rows and frozen sub-step counts, in order. Meant for :func:`idle_blocks`."""
    _check_reshapable(model)
    keep = _kept(model.config.blocks, drop)
    if not keep:
        raise ValueError("cannot drop every block")
    return _remap_blocks(model, len(keep), {old: new for new, old in enumerate(keep)}, 1.0, 0, for_training=False)


# largest output change (on [0, 1] images) accepted when idle blocks are left out
PRUNE_TOLERANCE = 1e-4


def prune_idle_blocks(model: CertifiedDenoiser, sigma_min: float,
                      sigma_max: float) -> tuple[CertifiedDenoiser, dict[str, Any] | None]:
    """``model`` without its :func:`idle_blocks` over ``[sigma_min, sigma_max]``, provided that leaves
    the output on a probe image (at the range's ends and middle) within ``PRUNE_TOLERANCE``; else
    ``model`` itself. The record (None when no block is idle) names the blocks, the measured
    change and whether they were ``kept`` for exceeding the tolerance."""
    idle = idle_blocks(model, sigma_min, sigma_max)
    if not idle:
        return model, None
    pruned = prune_denoiser(model, idle)
    generator = torch.Generator().manual_seed(0)
    probe = torch.rand((1, model.config.channels, 48, 48), generator=generator)
    change = 0.0
    with torch.no_grad():
        for sigma in (sigma_min, (sigma_min + sigma_max) / 2, sigma_max):
            noisy = probe + sigma * torch.randn(probe.shape, generator=generator)
            change = max(change, float((pruned(noisy, sigma) - model(noisy, sigma)).abs().max()))
    record = {"blocks": idle, "of": model.config.blocks, "time_scale_below": IDLE_TIME_SCALE,
              "max_output_change": change, "kept": change > PRUNE_TOLERANCE}
    return (model if record["kept"] else pruned), record


def revive_denoiser(model: CertifiedDenoiser, replace: list[int], fresh_weight_scale: float = 1e-2,
                    seed: int = 0) -> CertifiedDenoiser:
    """A copy of ``model`` whose blocks ``replace`` (0-based) are fresh near-identity blocks with
    the full integration time (as :func:`grow_denoiser` makes new ones), the others unchanged."""
    _check_reshapable(model)
    keep = _kept(model.config.blocks, replace)
    return _remap_blocks(model, model.config.blocks, {k: k for k in keep}, fresh_weight_scale, seed)


# new entries of a widened convolution, relative to a fresh initialisation: on the shipped gray
# (32 / 64 -> 64 / 128 channels) the output moves by 8e-4 at most and PSNR by -0.005 dB at 0.03,
# -0.09 dB at 0.1 (new potential channels act in every block, 19 times over)
WIDEN_WEIGHT_SCALE = 0.03


def widen_denoiser(model: CertifiedDenoiser, width: int | None = None, hidden: int | None = None,
                   fresh_weight_scale: float = WIDEN_WEIGHT_SCALE, seed: int = 0) -> CertifiedDenoiser:
    """A copy of ``model`` with ``width`` state channels and ``hidden`` potential channels per block
    (``None``: unchanged), computing nearly the same function.

    Every trained tensor fills the leading slice of its widened counterpart. New entries of each
    convolution ``A`` (the rows of new potential channels, the columns of new state channels) start at
    ``fresh_weight_scale`` times a fresh initialisation (``eps`` below); new biases and their
    sigma-conditioned shift rows start at zero; a new spline activation starts as the configured
    activation. Why the function barely moves: the lift zero-pads the new state channels, which are
    written and read only through new entries, so they reach the image channel at ``O(eps^2)``; a new
    potential channel adds ``h a^T s(a z)`` with ``||a|| = O(eps)``, also ``O(eps^2)``; and
    ``||A||^2``, which sets the step ``h``, grows by ``O(eps^2)`` only (new rows and columns add
    ``eps^2`` terms to ``A A^T`` or ``A^T A``). The certificate needs no argument: the widened model
    is a certified denoiser like any other and recomputes its constants from certified norm bounds.
    Returned in train mode with every sub-step count unfrozen and the power method reset (the
    norms changed). Raises ValueError for an unconstrained model, or a width or hidden count that is
    not larger than the model's.
    """
    _check_reshapable(model)
    old = model.config
    width = old.width if width is None else int(width)
    hidden = old.hidden if hidden is None else int(hidden)
    if width < old.width or hidden < old.hidden or (width, hidden) == (old.width, old.hidden):
        raise ValueError(f"cannot widen {old.width} state / {old.hidden} potential channels to {width} / {hidden}: "
                         "neither may shrink and one must grow")
    wide = _fresh_model({**old.to_dict(), "width": width, "hidden": hidden}, fresh_weight_scale, seed)
    old_state, new_state = model.state_dict(), wide.state_dict()
    sigma_head = _last_layer(model.embedding, "embedding")
    gate_head = _last_layer(model.gate_embedding, "gate_embedding")
    same_places = {k: k for k in range(old.blocks)}
    with torch.no_grad():
        for key, fresh in new_state.items():
            value = old_state[key]
            if key.endswith("norm_estimate"):
                new_state[key] = torch.zeros(())  # the norms changed: the next estimate starts from scratch
                continue
            if key.endswith("power_vector") or key.endswith("fixed_substeps"):
                continue  # a fresh power vector; the counts are unfrozen below
            head = key.rsplit(".", 1)[0]
            if head == gate_head or (head == sigma_head and old.sigma_conditioning):
                # rows per potential channel: a new channel's shift starts without sigma dependence,
                # its gate (almost) fully on, like a fresh model's
                new_state[key] = _spread_rows(value, fresh, same_places, old.hidden, head == gate_head, old.blocks,
                                              new_rows_per_block=hidden)
                continue
            out = fresh.clone()
            if key.endswith("linear.weight"):
                out.mul_(fresh_weight_scale)
            elif key.endswith(".bias") and key.startswith("network."):
                out.zero_()
            out[tuple(slice(0, n) for n in value.shape)] = value
            new_state[key] = out
    wide.load_state_dict(new_state)
    wide.unfreeze_substeps()
    wide.train()
    return wide


def _check_reshapable(model: CertifiedDenoiser) -> None:
    if not isinstance(model, CertifiedDenoiser):
        raise ValueError("only certified denoisers can be grown, pruned, revived or widened (the baseline has no flow blocks)")


def _kept(blocks: int, removed: list[int]) -> list[int]:
    bad = [k for k in removed if not 0 <= k < blocks]
    if bad:
        raise ValueError(f"block indices {bad} out of range for {blocks} blocks")
    return [k for k in range(blocks) if k not in set(removed)]


def _remap_blocks(model: CertifiedDenoiser, blocks: int, kept: dict[int, int], fresh_weight_scale: float,
                  seed: int, for_training: bool = True) -> CertifiedDenoiser:
    """A model with ``blocks`` blocks: old block ``i`` becomes block ``kept[i]`` (with its conditioning
    rows and frozen sub-step count); every new index not in ``kept`` gets a fresh block scaled by
    ``fresh_weight_scale``. ``for_training``: returned in train mode with every count unfrozen
    (the new blocks have none yet); otherwise in eval mode as copied."""
    old_config = model.config
    config = {**old_config.to_dict(), "blocks": blocks}
    if old_config.strides:
        # a kept block keeps its scale; in a strided model a fresh block only replaces one in place
        # (revive: same count), since growing refuses strides
        strides = list(old_config.strides) if blocks == old_config.blocks else [1] * blocks
        for old, new in kept.items():
            strides[new] = old_config.strides[old]
        config["strides"] = strides
    grown = _fresh_model(config, fresh_weight_scale, seed)
    old_state, new_state = model.state_dict(), grown.state_dict()
    # the last layer of each embedding has one row (group) per block: those rows move with the blocks
    sigma_head = _last_layer(model.embedding, "embedding")
    time_head = _last_layer(model.time_embedding, "time_embedding")
    injection_head = _last_layer(model.injection_embedding, "injection_embedding")
    gate_head = _last_layer(model.gate_embedding, "gate_embedding")
    with torch.no_grad():
        for key, value in old_state.items():
            parts = key.split(".")
            if parts[0] == "network":
                index = int(parts[1])
                if index == 0:
                    target = index  # the lift
                elif index == old_config.blocks + 1:
                    target = blocks + 1  # the projection
                elif index - 1 in kept:
                    target = kept[index - 1] + 1
                else:
                    continue  # a dropped or replaced block
                new_state[".".join(["network", str(target), *parts[2:]])] = value.clone()
            elif key.rsplit(".", 1)[0] == sigma_head and old_config.sigma_conditioning:
                new_state[key] = _spread_rows(value, new_state[key], kept, old_config.hidden, False, blocks)
            elif key.rsplit(".", 1)[0] in (time_head, injection_head):
                # a new block starts with the full integration time and the initial (small) pull
                new_state[key] = _spread_rows(value, new_state[key], kept, 1, True, blocks)
            elif key.rsplit(".", 1)[0] == gate_head:
                # and with every potential channel (almost) fully on
                new_state[key] = _spread_rows(value, new_state[key], kept, old_config.hidden, True, blocks)
            else:
                new_state[key] = value.clone()
        placed = set(kept.values())
        for j in range(blocks):
            if j in placed:
                continue
            prefix = f"network.{j + 1}."
            new_state[prefix + "linear.weight"] = new_state[prefix + "linear.weight"] * fresh_weight_scale
            new_state[prefix + "linear.norm_estimate"] = torch.zeros(())  # next estimate starts from scratch
    grown.load_state_dict(new_state)
    if not for_training:
        return grown.eval()
    grown.unfreeze_substeps()
    grown.train()
    return grown


def _fresh_model(config: dict[str, Any], fresh_weight_scale: float, seed: int) -> CertifiedDenoiser:
    """A new certified denoiser of ``config``, initialised from ``seed`` without touching the
    caller's generator; checks the scale its new weights will be given."""
    if not 0.0 < fresh_weight_scale <= 1.0:
        raise ValueError(f"fresh_weight_scale must lie in (0, 1], got {fresh_weight_scale}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_denoiser(DenoiserConfig.from_dict(config))
    assert isinstance(model, CertifiedDenoiser)
    return model


def _last_layer(embedding: torch.nn.Module | None, name: str) -> str | None:
    """State-dict prefix of an embedding head's last layer (its rows are grouped per block)."""
    return f"{name}.mlp.{len(embedding.mlp) - 1}" if embedding is not None else None


def _spread_rows(old: torch.Tensor, fresh: torch.Tensor, kept: dict[int, int], rows_per_block: int,
                 keep_fresh_bias: bool, blocks: int, new_rows_per_block: int | None = None) -> torch.Tensor:
    """An embedding head's rows for the reshaped model (``blocks`` blocks of ``new_rows_per_block``
    rows, default ``rows_per_block``): old block ``i``'s rows move to the start of block
    ``kept[i]``'s, rows past the blocks (the relaxation logit) stay at the end. A new block's rows,
    and a widened block's new rows, get zero weights (no sigma dependence yet) and a zero bias, or
    ``fresh``'s bias with ``keep_fresh_bias`` (the initial time logit: full integration time)."""
    new_rows = rows_per_block if new_rows_per_block is None else new_rows_per_block
    tail = len(fresh) - new_rows * blocks
    out = fresh.clone()
    if old.ndim > 1 or not keep_fresh_bias:
        out.zero_()
    for i, j in kept.items():
        out[j * new_rows:j * new_rows + rows_per_block] = old[i * rows_per_block:(i + 1) * rows_per_block]
    if tail:
        out[-tail:] = old[-tail:]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m pnp_stable.training.grow SOURCE DEST (--blocks N | --prune-idle | --revive-idle |
    --widen WIDTH HIDDEN)``."""
    parser = argparse.ArgumentParser(prog="python -m pnp_stable.training.grow", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="shipped model name or .pt file to reshape")
    parser.add_argument("dest", help="where to write the new model (.pt); never overwritten")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--blocks", type=int, help="grow to this many gradient-flow blocks (new ones spread between)")
    what.add_argument("--prune-idle", action="store_true",
                      help="drop the blocks whose integration time is ~0 at every noise level (same function, cheaper)")
    what.add_argument("--revive-idle", action="store_true",
                      help="replace those blocks in place by fresh near-identity blocks, to train on")
    what.add_argument("--widen", type=int, nargs=2, metavar=("WIDTH", "HIDDEN"),
                      help="more state / potential channels per block, the trained ones kept (nearly the same function)")
    parser.add_argument("--sigma-range", type=float, nargs=2, metavar=("MIN", "MAX"), default=None,
                        help="noise levels (/255) over which a block must be idle (default: the model's trained range)")
    parser.add_argument("--fresh-weight-scale", type=float, default=None,
                        help="scale of the new convolution entries (default 0.01; 0.03 with --widen)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        dest = Path(args.dest)
        if dest.exists():
            raise ValueError(f"{dest} exists; choose another destination")
        source = load(args.source)
        if args.fresh_weight_scale is None:
            args.fresh_weight_scale = WIDEN_WEIGHT_SCALE if args.widen else 1e-2
        if args.widen is not None:
            width, hidden = args.widen
            model = widen_denoiser(source, width, hidden, args.fresh_weight_scale, args.seed)
            provenance = {"widened_from": {"source": str(args.source), "width": source.config.width,
                                           "hidden": source.config.hidden,
                                           "fresh_weight_scale": args.fresh_weight_scale}}
            summary = (f"{width} state / {hidden} potential channels per block "
                       f"({source.config.width} / {source.config.hidden} trained, kept)")
        elif args.blocks is not None:
            model = grow_denoiser(source, args.blocks, args.fresh_weight_scale, args.seed)
            provenance = {"grown_from": {"source": str(args.source), "blocks": source.config.blocks,
                                         "positions": grown_positions(source.config.blocks, args.blocks),
                                         "fresh_weight_scale": args.fresh_weight_scale}}
            summary = f"{args.blocks} blocks ({source.config.blocks} trained, kept in order)"
        else:
            low, high = _sigma_range(source, args.sigma_range)
            if args.prune_idle:
                model, record = prune_idle_blocks(source, low, high)
                idle = record["blocks"] if record is not None else []
            else:
                idle = idle_blocks(source, low, high)
            if not idle:
                raise ValueError(f"no block of {args.source} is idle over sigma {255 * low:g}-{255 * high:g}/255")
            origin = {"source": str(args.source), "blocks": source.config.blocks, "idle": idle,
                      "sigma_range_255": [255 * low, 255 * high], "time_scale_below": IDLE_TIME_SCALE}
            if args.prune_idle:
                if record["kept"]:
                    raise ValueError(f"leaving out the idle blocks {idle} of {args.source} would move its output by "
                                     f"{record['max_output_change']:.2e} (more than {PRUNE_TOLERANCE:g}); not pruned")
                provenance = {"pruned_from": {**origin, "max_output_change": record["max_output_change"]}}
                summary = f"{model.config.blocks} blocks (idle blocks {idle} of {source.config.blocks} dropped)"
            else:
                model = revive_denoiser(source, idle, args.fresh_weight_scale, args.seed)
                provenance = {"revived_from": {**origin, "fresh_weight_scale": args.fresh_weight_scale}}
                summary = f"{model.config.blocks} blocks (idle blocks {idle} replaced by fresh ones)"
        if args.prune_idle:
            _save_pruned(source, model, dest, provenance)
        else:
            save_denoiser(model, dest, metadata=_reshaped_metadata(source, provenance))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {dest}: {summary}")
    return 0


def _reshaped_metadata(source: CertifiedDenoiser, provenance: dict) -> dict:
    """Metadata of a model to train on: the reshape (``provenance``, naming the source's name,
    date and commit when it has them) and the source's ``training`` section, whose steps and wall
    time are the reshaped weights' history too."""
    source_meta = getattr(source, "metadata", None) or {}
    identity = {key: source_meta[key] for key in ("name", "date", "commit") if source_meta.get(key)}
    metadata = {key: ({**value, "source_model": identity} if identity else value) for key, value in provenance.items()}
    if source_meta.get("training"):
        metadata["training"] = source_meta["training"]
    return metadata


def _save_pruned(source: CertifiedDenoiser, pruned: CertifiedDenoiser, dest: Path, provenance: dict) -> None:
    """A pruned model is a model to ship: ``DEST`` and ``DEST.json`` with the source's metadata
    (training history, calibrated rules, BSD68 numbers of the same function) and what changed:
    architecture, parameter count, the certificate recomputed from the remaining blocks and a
    fresh empirical check of it."""
    from pnp_stable.training.export import certificate_record, empirical_certificate_check, git_commit, write_model

    certificate = certificate_record(pruned)
    metadata = {**(getattr(source, "metadata", None) or {}), **provenance,
                "name": dest.stem, "architecture": pruned.config.to_dict(),
                "parameters": sum(p.numel() for p in pruned.parameters()), "certificate": certificate,
                "date": _dt.date.today().isoformat(), "commit": git_commit()}
    if certificate["averagedness"] is not None:
        metadata["empirical_check"] = empirical_certificate_check(pruned, certificate["averagedness"])
    write_model(pruned, dest, metadata)


def _sigma_range(model: CertifiedDenoiser, given: list[float] | None) -> tuple[float, float]:
    """The range (on the [0, 1] scale) over which idleness is checked: given, or the model's own."""
    if given is not None:
        return given[0] / 255.0, given[1] / 255.0
    trained = (getattr(model, "metadata", None) or {}).get("sigma_range_255")
    if not trained:
        raise ValueError("the model records no trained noise range; pass --sigma-range MIN MAX")
    return float(trained[0]) / 255.0, float(trained[1]) / 255.0


if __name__ == "__main__":
    raise SystemExit(main())
