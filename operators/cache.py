"""A small on-disk JSON cache for expensive, deterministic results (e.g. CT norm bounds).

Location: ``$PNP_STABLE_CACHE`` if set, else ``$XDG_CACHE_HOME/pnp-stable``, else
``~/.cache/pnp-stable``. Entries are keyed by the SHA-256 of a canonical JSON description of
what was computed, stored with that description (checked on read), and written atomically
(temporary file in the same directory, then ``os.replace``), so concurrent writers and crashes
never leave a partial file. Unreadable entries are ignored (and later overwritten).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from pnp_stable.fileio import atomic_write_bytes

__all__ = ["cache_dir", "cache_key", "load_entry", "norm_bounds_of", "store_entry"]


def cache_dir() -> Path:
    """The cache root (not created here)."""
    override = os.environ.get("PNP_STABLE_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pnp-stable"


def cache_key(description: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``description`` (sorted keys, no whitespace)."""
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _entry_path(namespace: str, description: dict[str, Any]) -> Path:
    return cache_dir() / namespace / f"{cache_key(description)}.json"


def load_entry(namespace: str, description: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result for ``description``, or None if absent, unreadable or mismatched."""
    path = _entry_path(namespace, description)
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("description") != description or not isinstance(entry.get("result"), dict):
        return None
    return entry["result"]


def store_entry(namespace: str, description: dict[str, Any], result: dict[str, Any]) -> Path | None:
    """Atomically write ``result`` for ``description``; returns the path, or None if the cache
    directory is not writable (caching is an optimisation, never a reason to fail)."""
    path = _entry_path(namespace, description)
    try:
        text = json.dumps({"description": description, "result": result}, sort_keys=True, indent=1)
        atomic_write_bytes(path, text.encode("utf-8"), make_parents=True)
    except (OSError, ValueError):  # ValueError: atomic_write_bytes names an unwritable folder
        return None
    return path


def norm_bounds_of(entry: dict[str, Any]) -> tuple[float, float] | None:
    """``(upper, lower)`` of a cached norm-bound entry, or None unless both are finite numbers with
    ``0 < lower <= upper`` (a damaged entry is recomputed, never read)."""
    try:
        upper, lower = float(entry["upper"]), float(entry["lower"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(upper) and math.isfinite(lower) and 0 < lower <= upper):
        return None
    return upper, lower
