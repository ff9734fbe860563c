"""Saving and loading denoisers: ``NAME.pt`` (config + weights + metadata) and ``NAME.json``.

:func:`load` rebuilds the network from its stored configuration, puts it in eval mode and
**re-derives its certificate from the weights** (certified norm bounds): the stored metadata is
never trusted, and a mismatch is an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pnp_stable.denoisers.config import DenoiserConfig
from pnp_stable.denoisers.models import CertifiedDenoiser, UnconstrainedDenoiser, build_denoiser
from pnp_stable.fileio import atomic_write_bytes, atomic_write_json, read_torch_file

__all__ = ["FORMAT", "MAX_FROZEN_SUBSTEPS", "check_finite_state", "save_denoiser", "load", "available", "pretrained_dir", "user_models_dir",
           "stored_metadata", "rewrite_with_metadata"]

FORMAT = "pnp-stable-denoiser/1"
# relative slack when comparing a recomputed certificate with the stored one (float64 SVD
# rounding differs across BLAS builds at the ~1e-15 level; anything larger is a real mismatch)
_CERTIFICATE_TOLERANCE = 1e-6
_POWER_VECTOR = ".power_vector"


def pretrained_dir() -> Path:
    """Folder of the shipped weights (``pnp_stable.pretrained``)."""
    import pnp_stable.pretrained as pretrained_pkg

    return Path(pretrained_pkg.__file__).resolve().parent


def user_models_dir() -> Path:
    """Folder of the user's own models, found by name like the shipped ones.

    ``$PNP_STABLE_MODELS`` if set, else ``$XDG_DATA_HOME/pnp-stable/models`` (default
    ``~/.local/share/pnp-stable/models``). ``pnp-stable train-denoiser --export NAME`` writes
    there by default. The folder need not exist.
    """
    explicit = os.environ.get("PNP_STABLE_MODELS")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join("~", ".local", "share")
    return Path(data_home).expanduser() / "pnp-stable" / "models"


def _torch_bytes(obj: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _is_power_state(key: str) -> bool:
    return key.endswith(_POWER_VECTOR)


def save_denoiser(model: CertifiedDenoiser | UnconstrainedDenoiser, path: str | os.PathLike,
                  metadata: dict[str, Any] | None = None) -> None:
    """Write ``model`` (config, weights incl. frozen step counts, metadata) atomically to ``path``.

    The power method's vectors are left out: they only warm-start the next estimate (training),
    the certificate never reads them, and they are most of a deep model's file (24 blocks: 3.1 of
    5.4 MB). The converged estimates (one number per map) are kept.
    """
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items() if not _is_power_state(k)},
        "metadata": json.loads(json.dumps(metadata or {})),  # plain types only (weights_only load)
    }
    atomic_write_bytes(path, _torch_bytes(payload), make_parents=True)


def _resolve(name_or_path: str | os.PathLike) -> Path:
    """The file that ``name_or_path`` names: a path (``.pt`` suffix or a separator), else a shipped
    or user model name, else an existing file; ValueError naming the input if none."""
    candidate = Path(name_or_path).expanduser()
    text = str(name_or_path)
    looks_like_path = candidate.suffix == ".pt" or os.sep in text or (os.altsep or os.sep) in text
    if looks_like_path:
        if not candidate.is_file():
            raise ValueError(f"denoiser file not found: {candidate}")
        return candidate
    for folder in (pretrained_dir(), user_models_dir()):
        named = folder / f"{text}.pt"
        if named.is_file():
            return named
    if candidate.is_file():
        # an existing file without a .pt suffix (``garbage.png``, ``model.pth``) is what the user
        # meant: reading it says what is wrong with it, where "unknown denoiser NAME" would not
        return candidate
    if candidate.is_dir():
        raise ValueError(f"{candidate} is a folder, not a denoiser file")
    names = ", ".join(m["name"] for m in available()) or "none"
    raise ValueError(f"unknown denoiser {text!r}; known models: {names} (or pass a path to a .pt file)")


def _read_payload(path: Path) -> dict[str, Any]:
    try:
        payload = read_torch_file(path, "a pnp-stable denoiser file")
    except ValueError as exc:
        # torch reports a truncated archive as an OSError ("Invalid argument"), which
        # read_torch_file passes on as the file system refusing: a file we may read is not that
        if isinstance(exc.__cause__, OSError) and path.is_file() and os.access(path, os.R_OK):
            raise ValueError(f"{path} is not a (complete) pnp-stable denoiser file: it is truncated or "
                             "corrupt") from None
        raise
    if isinstance(payload, dict) and str(payload.get("format", "")).startswith("pnp-stable-train/"):
        # a run's checkpoint.pt or best.pt: the weights are there, but not the frozen certified step counts
        raise ValueError(f"{path} is a training checkpoint, not a denoiser: export it first "
                         f"(python -m pnp_stable.training.export {path} NAME --dest DIR)")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pnp-stable denoiser file (format {FORMAT})")
    return payload


def _invalid(path: Path, why: str) -> ValueError:
    return ValueError(f"{path} is not a valid pnp-stable denoiser file: {why}")


def _is_number(value: Any) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _checked_parts(payload: dict[str, Any], path: Path) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """``(model, state_dict, metadata)`` of a payload whose format tag is right, its fields checked:
    a crafted or damaged file (a field missing, None, or of another type) is a one-line
    ValueError naming ``path``, never a KeyError, TypeError or AttributeError from deeper down."""
    config, state, metadata = payload.get("config"), payload.get("state_dict"), payload.get("metadata")
    if not isinstance(config, dict):
        raise _invalid(path, f"its config is {type(config).__name__}, not a mapping")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise _invalid(path, "it holds no state_dict of named tensors")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _invalid(path, f"its metadata is {type(metadata).__name__}, not a mapping")
    certificate = metadata.get("certificate")
    if certificate is not None:
        if not isinstance(certificate, dict):
            raise _invalid(path, f"its metadata's certificate is {type(certificate).__name__}, not a mapping")
        for key in ("averagedness", "lipschitz"):
            value = certificate.get(key)
            if value is not None and not _is_number(value):
                raise _invalid(path, f"its certificate's {key} is {value!r}, not a finite number")
    color = metadata.get("color")
    if color is not None and not isinstance(color, dict):
        raise _invalid(path, f"its metadata's color is {type(color).__name__}, not a mapping")
    if isinstance(color, dict) and "chroma_scale" in color and not (_is_number(color["chroma_scale"])
                                                                 and color["chroma_scale"] > 0):
        raise _invalid(path, f"its colour chroma_scale is {color['chroma_scale']!r}, not a positive number")
    try:
        model = build_denoiser(DenoiserConfig.from_dict(config))
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _invalid(path, f"its config describes no model ({reason})") from None
    return model, state, metadata


def stored_metadata(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The metadata stored in a model file (shipped name or path), as written at export; a
    one-line ValueError for a file that is not a valid model (see :func:`load`)."""
    path = _resolve(name_or_path)
    return dict(_checked_parts(_read_payload(path), path)[2])


def rewrite_with_metadata(name_or_path: str | os.PathLike, pt_path: str | os.PathLike,
                          metadata: dict[str, Any]) -> Path:
    """Write the configuration and weights of a model file, byte for byte, to ``pt_path`` with new
    ``metadata`` (and its ``.json``), atomically; then reload it, which re-derives the certificate
    from the weights and refuses one weaker than ``metadata`` records. ``pt_path`` may not be the
    source file: an input is never overwritten."""
    source = _resolve(name_or_path)
    pt_path = Path(pt_path)
    if pt_path.exists() and pt_path.resolve() == source.resolve():
        raise ValueError(f"{pt_path} is the model being rewritten: write to another name or folder")
    payload = _read_payload(source)
    payload = {**payload, "metadata": json.loads(json.dumps(metadata))}
    atomic_write_bytes(pt_path, _torch_bytes(payload), make_parents=True)
    atomic_write_json(pt_path.with_suffix(".json"), payload["metadata"], make_parents=True)
    load(pt_path)
    return pt_path


def check_finite_state(model: nn.Module, source: Path) -> None:
    """Refuse NaN/inf anywhere in the weights and buffers (a one-line ValueError naming
    ``source``): a non-finite bias, embedding or integration time makes the output NaN, which no
    certificate describes. Also used by export, before it computes anything from the weights."""
    bad = [k for k, v in model.state_dict().items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{source}: non-finite values (NaN or inf) in {', '.join(bad[:5])}"
                         + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))


# no trained model needs more sub-steps per block (the shipped ones take 1); a larger stored count is
# no model the training pipeline writes
MAX_FROZEN_SUBSTEPS = 10_000


def _check_block_integration(model: nn.Module, source: Path) -> None:
    """Every block integrates over the configured time: the per-block ``time`` buffers are state
    only so that they move with the module; a stored one that differs (negative: a flow run
    backwards, expansive; huge: 10^300 sub-steps) is not the model the configuration describes.
    Nor is a frozen sub-step count outside [0, ``MAX_FROZEN_SUBSTEPS``]."""
    if not isinstance(model, CertifiedDenoiser):
        return
    for i, block in enumerate(model.flow_blocks):
        if float(block.time) != float(model.config.time):
            raise ValueError(f"{source}: block {i} stores integration time {float(block.time)!r}, "
                             f"the configuration says {model.config.time!r}")
        frozen = int(block.fixed_substeps)
        if not 0 <= frozen <= MAX_FROZEN_SUBSTEPS:
            # more sub-steps never weaken the certificate, but a crafted count makes every call endless
            raise ValueError(f"{source}: block {i} stores {frozen} frozen sub-steps; at most {MAX_FROZEN_SUBSTEPS} "
                             "are accepted")


def _check_certificate(model: nn.Module, stored: dict[str, Any] | None, source: Path) -> None:
    if not isinstance(model, CertifiedDenoiser) or not stored:
        return
    cert = model.certificate()
    claimed_alpha = stored.get("averagedness")
    if claimed_alpha is not None:
        if cert.averagedness is None or cert.averagedness > claimed_alpha * (1 + _CERTIFICATE_TOLERANCE):
            raise ValueError(
                f"{source}: weights give averagedness {cert.averagedness}, metadata claims {claimed_alpha}"
            )
    claimed_lip = stored.get("lipschitz")
    if claimed_lip is not None and cert.lipschitz > claimed_lip * (1 + _CERTIFICATE_TOLERANCE):
        raise ValueError(f"{source}: weights give Lipschitz bound {cert.lipschitz}, metadata claims {claimed_lip}")


def load(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a shipped denoiser by name (see :func:`available`) or a saved ``.pt`` file, in eval mode.

    Guarantee: for a certified model the certificate is recomputed from the loaded weights with
    certified norm bounds; if it is weaker than the one recorded at export, loading fails.
    The returned module's ``metadata`` attribute holds the stored metadata.

    Returns a :class:`CertifiedDenoiser` or :class:`UnconstrainedDenoiser`; a gray model trained
    for colour images (metadata ``color``, ``python -m pnp_stable.training.run ... --set
    color=opponent``) comes inside the :class:`~pnp_stable.denoisers.OpponentColorDenoiser` it was
    trained in, an RGB denoiser with the gray model's certificate.
    """
    path = _resolve(name_or_path)
    payload = _read_payload(path)
    model, state, metadata = _checked_parts(payload, path)
    try:
        # files written before the power vectors were left out still carry them; newer ones keep
        # the freshly drawn vectors, which only matter to a training run started from the file
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{path}: weights do not match the stored architecture: {exc}") from exc
    missing = [k for k in missing if not _is_power_state(k)]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the stored architecture: "
                         f"missing {missing[:5]}, unexpected {list(unexpected)[:5]}")
    check_finite_state(model, path)
    _check_block_integration(model, path)
    model.eval()
    _check_certificate(model, metadata.get("certificate"), path)
    color = metadata.get("color")
    if isinstance(color, dict):
        return _colour_denoiser(model, color, metadata, path).to(device)
    model.metadata = metadata
    return model.to(device)


def _colour_denoiser(gray: nn.Module, color: dict[str, Any], metadata: dict[str, Any], path: Path) -> nn.Module:
    from pnp_stable.denoisers.color import DEFAULT_CHROMA_SCALE, OpponentColorDenoiser

    if color.get("mode") != "opponent":
        raise ValueError(f"{path}: unknown colour mode {color.get('mode')!r} in the metadata")
    gray.metadata = {**metadata, "channels": 1}
    colour = OpponentColorDenoiser(gray, color.get("chroma_scale", DEFAULT_CHROMA_SCALE))
    colour.metadata = {**colour.metadata, **metadata}
    return colour.eval()


def available(include_user: bool = True) -> list[dict[str, Any]]:
    """Metadata of the models :func:`load` finds by name: the shipped ones (``pretrained/NAME.json``),
    then, with ``include_user``, those in :func:`user_models_dir`, each sorted by name.

    Every entry gets ``source`` (``"shipped"`` or ``"user"``) and ``path`` (the ``.pt`` file). A
    user model with a shipped model's name is listed but shadowed (``load`` picks the shipped
    one); an unreadable metadata file is reported in ``error`` instead of failing the listing.
    """
    folders = [("shipped", pretrained_dir())]
    if include_user:
        folders.append(("user", user_models_dir()))
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for source, folder in folders:
        if not folder.is_dir():
            continue
        for meta_path in sorted(folder.glob("*.json")):
            weights = meta_path.with_suffix(".pt")
            if not weights.is_file():
                continue
            try:
                with open(meta_path) as f:
                    meta = json.load(f)
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                meta = {"error": f"unreadable metadata: {exc}"}
            meta.setdefault("name", meta_path.stem)
            meta["source"], meta["path"] = source, str(weights)
            if meta["name"] in seen:
                meta["shadowed"] = True
            seen.add(meta["name"])
            out.append(meta)
    return out
