"""User-facing errors and warnings: one line each, errors with exit code 2, no traceback.

Library code raises ``ValueError``/``FileNotFoundError`` with a message naming the problem; the
command line reports them through :func:`user_errors` and never shows a traceback for them.
Library warnings (e.g. a fixed-point residual that increased) are shown by
:func:`one_line_warnings` as ``warning: <message>``, without Python's ``file:line`` prefix.
"""

from __future__ import annotations

import contextlib
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
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


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
        raise UserError(f"permission denied: {exc.filename or exc}") from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - classified below, re-raised if unexpected
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
