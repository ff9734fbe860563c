"""User-facing errors and warnings: one line each, errors with exit code 2, no traceback.

Library code raises ``ValueError``/``FileNotFoundError`` with a message naming the problem; the
command line reports them through :func:`user_errors` and never shows a traceback for them.
Library warnings (e.g. a fixed-point residual that increased) are shown by
:func:`one_line_warnings` as ``warning: <message>``, without Python's ``file:line`` prefix.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import warnings
from typing import Iterator

import click

EXIT_USER_ERROR = 2


class UserError(click.ClickException):
    """A problem with the user's input, reported as ``error: <message>`` with exit code 2."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message if hint is None else f"{message} (hint: {hint})")

    def show(self, file=None) -> None:  # noqa: D102 - click API
        click.echo(f"error: {self.format_message()}", err=True)


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    text = str(exc).lower()
    # PyTorch's CPU allocator says "DefaultCPUAllocator: can't allocate memory: you tried to allocate
    # N bytes" (a RuntimeError), not "out of memory" as CUDA does
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text))


def check_level_square(value: float | None, option: str) -> None:
    """Refuse a noise level whose square underflows (below ~1.5e-154): the parameter rules divide
    by such squares, which would fail with a ZeroDivisionError deep inside, or blame another option."""
    if value is not None and value > 0 and value * value < sys.float_info.min:
        raise UserError(f"{option} {value:g} is too small: its square underflows to 0 in floating point",
                        hint="noise levels are on the [0, 1] scale, e.g. 0.01, 1% or 2.55/255")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected failures into :class:`UserError` (one line, exit 2)."""
    try:
        yield
    except UserError:
        raise
    except FileNotFoundError as exc:
        name = exc.filename or str(exc)
        raise UserError(f"file not found: {name}") from None
    except IsADirectoryError as exc:
        raise UserError(f"expected a file but got a directory: {exc.filename}") from None
    except PermissionError as exc:
        # a rename over the destination names the hidden temporary file first and the destination second
        raise UserError(f"permission denied: {exc.filename2 or exc.filename or exc}") from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - classified below, re-raised if unexpected
        from pnp_stable.worker_pool import WorkerDied

        if isinstance(exc, WorkerDied):  # its own way out (fewer workers), not the one of a solve's memory
            raise UserError(str(exc)) from None
        if _is_out_of_memory(exc):
            raise UserError("out of memory",
                            hint="denoise in smaller tiles (--tile 256), use --device cpu, or crop the input") from None
        if isinstance(exc, ValueError):
            raise UserError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        raise


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show every warning raised inside as one line ``warning: <message>`` on stderr, written
    above a running progress bar (``tqdm.write``) rather than through it."""

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001 - warnings API
        from tqdm import tqdm

        text = " ".join(str(message).split())
        tqdm.write(f"warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Handle SIGTERM (a scheduler's or ``kill``'s stop) like Ctrl-C, so that a solve stops cleanly
    at its last recorded iterate and, with ``--checkpoint``, saves its state."""

    def interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (e.g. an embedding application): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_FLOAT32_MAX = 3.4028234663852886e38


def check_step(step: float | None, solver: str) -> None:
    """Refuse a ``--step`` that cannot be computed with: infinite, or for ADMM/DRS (whose gamma
    enters the data prox as a float32 tensor) above float32's largest value, which becomes infinite
    there and was reported as "gamma must be finite, got 1e+300" (a finite number)."""
    if step is None:
        return
    if not math.isfinite(step):
        raise UserError(f"--step must be a finite number, got {step}")
    if solver != "fb" and step > _FLOAT32_MAX:
        raise UserError(f"--step {step:g} is too large: it overflows to infinity in single precision "
                        f"(at most {_FLOAT32_MAX:.3g})")
