"""What every benchmark's JSON file records about the run, so that anyone can reproduce it."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch


def run_record(script: str, argv: list[str] | None, **fields: Any) -> dict[str, Any]:
    """``fields`` plus the torch version, the machine, the date and the exact command
    (``argv``, or this process's arguments when None)."""
    args = argv if argv is not None else sys.argv[1:]
    return {
        **fields, "torch": torch.__version__, "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "date": time.strftime("%Y-%m-%d"), "command": f"python bench/{Path(script).name} " + " ".join(args),
    }
