"""Where a warm-started run began: a record of its starting point, taken when the run starts.

A run started with ``init_from=PATH`` continues the history of the file at ``PATH``. That file
may later change: the usual cycle continues ``pretrained/NAME.pt`` and exports the result as
``NAME``, overwriting the very file it started from. A record read at export time would then
describe the run's own result as its parent. So the training loop calls
:func:`starting_point_record` once, at the run's first step, keeps the record in every
checkpoint (a resume carries it over, an average of sibling runs keeps their common one) and
export writes that record; reading ``PATH`` at export time is only the fallback for checkpoints
written before records existed.
"""

from __future__ import annotations

from typing import Any

from pnp_stable.training.checkpoint import load_checkpoint

__all__ = ["starting_point_record", "wall_hours"]

# what pnp_stable.training.grow records of a reshaped model's source
_RESHAPE_KEYS = ("grown_from", "widened_from", "revived_from")


def wall_hours(state: dict[str, Any]) -> float:
    """A training checkpoint state's accumulated wall time, in hours (3 decimals)."""
    return round(float(state.get("elapsed", 0.0)) / 3600.0, 3)


def starting_point_record(init_from: str | None) -> dict[str, Any] | None:
    """The history of the file a run starts from, as it is *now*: its path and, for a training
    checkpoint, its steps, wall time and own origin; for an exported model, its name, date,
    commit, steps, wall time and origin (its metadata's ``training``), and for a model reshaped by
    ``pnp_stable.training.grow`` also the reshape (``grown_from``, ...). None without ``init_from``;
    only the path for a file that cannot be read as either (a foreign weights file)."""
    if not init_from:
        return None
    record: dict[str, Any] = {"path": init_from}
    try:
        state = load_checkpoint(init_from)
    except (ValueError, OSError):
        return _exported_record(init_from, record)
    record["steps"] = int(state["step"])
    record["wall_hours"] = wall_hours(state)
    origin = state.get("init_from_record") or state.get("config", {}).get("init_from")
    if origin:
        record["init_from"] = origin
    return record


def _exported_record(path: str, record: dict[str, Any]) -> dict[str, Any]:
    from pnp_stable.fileio import read_torch_file

    try:
        payload = read_torch_file(path, "an exported model")
        metadata = payload["metadata"]
        training = metadata.get("training") or {}
    except Exception:  # a moved or foreign file: the path is all we know
        return record
    record.update({key: metadata.get(key) for key in ("name", "date", "commit") if metadata.get(key)})
    for key in ("steps", "wall_hours", "init_from"):
        if training.get(key) is not None:
            record[key] = training[key]
    # a model reshaped by pnp_stable.training.grow: what was done to which model
    for key in _RESHAPE_KEYS:
        if metadata.get(key):
            record[key] = metadata[key]
    return record
