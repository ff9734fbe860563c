"""The README's Python example runs as printed, the Python blocks of the docs run, and the solve
signature printed in docs/solvers.md is the real one (a renamed argument breaks a reader's first paste)."""

from __future__ import annotations

import ast
import inspect
import re
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def _top_level_split(text: str) -> list[str]:
    parts, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    return [p.strip() for p in parts + [current] if p.strip()]


def test_the_readme_python_example_runs_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (block,) = _python_blocks(ROOT / "README.md")
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    res, task, x, y = namespace["res"], namespace["r"], namespace["x"], namespace["y"]
    assert res.guarantee.holds and res.guarantee.proven and res.monotone and res.converged
    blurred = -10 * torch.log10(((y.clamp(0, 1) - x) ** 2).mean())
    (final,) = res.history[-1]["psnr"]  # one per image of the batch
    assert final > float(blurred) + 2  # a real image, a real gain
    assert task.guarantee.holds and task.result.monotone and task.psnr > task.report["metrics"]["psnr_input"] + 2
    assert (tmp_path / "run.json").stat().st_size > 0 and (tmp_path / "run.png").stat().st_size > 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("Restoration(restored  PSNR ")


def test_the_documented_solve_signature_is_the_real_one():
    from pnp_stable.solvers import solve

    block = next(b for b in _python_blocks(ROOT / "docs" / "solvers.md") if b.startswith("solve(y, A, D"))
    inside = block[block.index("(") + 1:block.rindex(") ->")]
    parts = _top_level_split(" ".join(inside.split()))
    documented = [p for p in parts if p != "*"]
    real = inspect.signature(solve).parameters
    assert [p.split("=")[0] for p in documented] == list(real)
    first_keyword_only = next(i for i, p in enumerate(real.values()) if p.kind is p.KEYWORD_ONLY)
    assert parts.index("*") == first_keyword_only
    for part in documented:
        if "=" not in part or "|" in part:  # alternatives are listed, not a default
            continue
        name, default = part.split("=", 1)
        assert ast.literal_eval(default) == real[name].default, name


SHARED = ROOT.parent / "shared"


@pytest.mark.parametrize("document", ["certificates.md", "denoisers.md", "operators.md", "solvers.md"])
def test_the_python_blocks_of_the_docs_run(document, tmp_path, monkeypatch):
    """Each document's blocks run in order in one namespace, as a reader pasting them would; a block
    that reads ../shared is run against it when it is there (it is not on CI), and skipped otherwise."""
    monkeypatch.chdir(tmp_path)  # some blocks write files
    namespace: dict = {}
    ran = 0
    for index, block in enumerate(_python_blocks(ROOT / "docs" / document)):
        if block.startswith("solve(y, A, D"):  # a signature, checked above
            continue
        if "../shared" in block:
            if not (SHARED / "data").is_dir():
                continue
            block = block.replace("../shared", str(SHARED))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a kernel file's renormalisation, which the text explains
            exec(compile(block, f"docs/{document}, block {index}", "exec"), namespace)  # noqa: S102
        ran += 1
    assert ran >= 1
