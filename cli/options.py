"""Options shared by the restoration commands, and small parsers for their values."""

from __future__ import annotations

import math

import click


def parse_level(text: str | None, what: str = "noise", allow_zero: bool = False) -> float | None:
    """A noise level on the [0, 1] scale: ``0.01``, ``2.55/255`` or ``1%``; with ``allow_zero``, any
    spelling of 0 too (noise-free data)."""
    if text is None:
        return None
    s = str(text).strip()
    try:
        if s.endswith("%"):
            value = float(s[:-1]) / 100.0
        elif "/" in s:
            num, den = s.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(s)
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{text!r} is not a number (examples: 0.01, 2.55/255, 1%)", param_hint=f"--{what}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "a non-negative" if allow_zero else "a positive"
        raise click.BadParameter(f"{text!r} must be {kind} number", param_hint=f"--{what}")
    value = abs(value)  # -0 is 0
    if value > 1:
        # a bare number above 1 is most likely on the 0..255 scale; a percentage is of the [0, 1] range
        hint = f"{value:g}/255" if not s.endswith("%") and "/" not in s else "e.g. 1% or 2.55/255"
        raise click.BadParameter(f"{text!r} is above 1: levels are on the [0, 1] scale (try {hint})",
                                 param_hint=f"--{what}")
    return value


def manual_settings(sigma_den: str | None, step: float | None, strength: str, tile: int | None, solver: str,
                    checkpoint: str | None = None, resume: bool = False, per_image_state: bool = False) -> dict:
    """The solver settings a restoration command hands its task (``sigma_den``, ``step``,
    ``strength``, ``tile`` and, unless ``per_image_state``, ``checkpoint`` and ``resume``), checked
    before any work: a level whose square underflows, a step outside the solver's range, ``--resume``
    without ``--checkpoint`` (left to the caller with ``per_image_state``: a folder names one state
    per image)."""
    from pnp_stable.cli.errors import UserError, check_level_square, check_step

    settings = {"sigma_den": parse_level(sigma_den, "sigma-den"), "step": step, "strength": strength, "tile": tile}
    check_level_square(settings["sigma_den"], "--sigma-den")
    check_step(step, solver)
    if not per_image_state:
        if resume and checkpoint is None:
            raise UserError("--resume needs --checkpoint FILE (the state to continue)")
        settings.update(checkpoint=checkpoint, resume=resume)
    return settings


def check_kernel_spec(kernel: str) -> tuple[int, int]:
    """Parse ``kernel`` once before any heavy work, so a bad spec fails first; its shape. The task
    parses it again and warns then (about a renormalised kernel, for instance)."""
    import warnings

    from pnp_stable.operators.kernels import KernelNormalizationWarning, parse_kernel_spec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KernelNormalizationWarning)
        return parse_kernel_spec(kernel).shape


color_option = click.option(
    "--color", type=click.Choice(["opponent", "per-channel"]), default="opponent", show_default=True,
    help="RGB images with a gray denoiser: denoise in an orthonormal opponent colour space (same certificate; "
         "better on photographs) or channel by channel (better for independent channels, e.g. fluorescence).")


MIN_TILE = 16


def _tile_size(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    # every tile is computed with the receptive field's margin around it (tens of pixels for the
    # shipped models): below a few tens of pixels the margins are almost all the work
    if value is not None and 0 < value < MIN_TILE:
        raise click.BadParameter(f"{value} is too small: use 0 (never tile) or at least {MIN_TILE}")
    return value


tile_option = click.option(
    "--tile", type=click.IntRange(0), default=None, metavar="N", callback=_tile_size,
    help="Denoise in N x N tiles (N >= 16), each cropped with the margin the denoiser's receptive field needs: "
         "the same output and certificate in bounded memory. Default: above 1 Mpixel per denoiser call, tiles "
         "of 256 (CPU) or 1024 (GPU); 0: never.")


def solver_options(max_iter_default: int, solver_default: str = "fb", rgb: bool = True, output_tag: str = "restored",
                   folders: bool = False):
    """--solver, --denoiser, --max-iter, --tol, --sigma-den, --step, --strength, --accelerate, --device, --tile, --checkpoint,
    --resume, --report, --plot, --quiet, --seed.

    ``solver_default`` is per command, from the benchmarks with the shipped model: ADMM for blur
    (0.25 dB better than FB on deblur-quick, 3x fewer iterations) and for CT (+1.2 dB over FB on
    ct-quick and +0.013 SSIM, for about twice the time: a preconditioned CG prox per iteration).
    ``rgb``: the command takes RGB images (the default denoiser then depends on the image).
    ``output_tag``: the default output is ``<stem>_<output_tag>.<ext>``; ``folders``: the command
    takes a folder of images (the per-image naming of --checkpoint, --report and --plot is described).
    """
    per_image = (lambda text: text) if folders else (lambda text: "")

    def decorate(f):
        for opt in reversed([
            click.option("--solver", type=click.Choice(["fb", "admm", "drs"]), default=solver_default,
                         show_default=True,
                         help="PnP algorithm (ADMM/DRS relax the denoiser to be firmly non-expansive)."),
            click.option("--denoiser", default=None, metavar="NAME|PATH",
                         help="Shipped denoiser name (see `pnp-stable models`) or a saved .pt file "
                              + ("[default: gray; color for RGB images]." if rgb else "[default: gray].")),
            click.option("--max-iter", type=click.IntRange(1, 100000), default=max_iter_default, show_default=True),
            click.option("--tol", type=click.FloatRange(0, 1, min_open=True), default=1e-5, show_default=True,
                         help="Stop when the relative fixed-point residual falls below this."),
            click.option("--sigma-den", default=None, metavar="SIGMA",
                         help="Noise level handed to the denoiser (0.02, 5/255, 2%) instead of the automatic one."),
            click.option("--step", type=click.FloatRange(0, min_open=True), default=None, metavar="TAU",
                         help="FB step tau or ADMM/DRS gamma instead of the automatic one; the guarantee is "
                              "re-derived (FB needs tau < 2/||A||^2, the report says whether it holds)."),
            click.option("--strength", type=click.Choice(["rule", "sure"]), default="rule", show_default=True,
                         help="Regularisation strength: the automatic rule, or 'sure': also try stronger settings "
                              "and keep one only if Stein's unbiased risk estimate falls by 10% (images with little "
                              "to restore, e.g. flat regions; 4 to 8 times the time; not with --sigma-den, --step or "
                              "--checkpoint)."),
            click.option("--accelerate/--no-accelerate", default=True, show_default=True,
                         help="Safeguarded Anderson acceleration (keeps the guarantee and the monitor valid)."),
            click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
                         help="Seed of the simulated noise."),
            click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
            tile_option,
            click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                         help="Save the solver state here every minute and when the run ends or is stopped "
                              "(Ctrl-C, SIGTERM)" + per_image("; with a folder, one file per image (FILE's stem + "
                                                              "the image's)") + "."),
            click.option("--resume", is_flag=True,
                         help="Continue the solve saved in --checkpoint (same input and options; --max-iter, "
                              "--tol and --tile may change)."),
            click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
                         help=f"Output image (.png, .jpg, .tif or .npy; default: <stem>_{output_tag}.<ext> beside the "
                              "input; never the input)."),
            click.option("--report", type=click.Path(dir_okay=False), default=None,
                         help="Write a JSON report (inputs, operator, certificate, guarantee, residual history)"
                              + per_image("; with a folder, one file per image (FILE's stem + the image's)") + "."),
            click.option("--plot", type=click.Path(dir_okay=False), default=None,
                         help="Write a plot of the residual (log scale) and PSNR when known (.png, .pdf, .svg or "
                              ".jpg)" + per_image("; with a folder, one file per image") + "."),
            click.option("--quiet", is_flag=True, help="No progress bar and no notes; only the summary line."),
        ]):
            f = opt(f)
        return f

    return decorate


def read_option_file(source, option: str, reader):
    """``reader(source)`` for the file an option names (``--flat FILE``), its failures as one-line user
    errors naming the option; a number or None (the option's value, not a file) as it is."""
    if source is None or isinstance(source, float):
        return source
    from pnp_stable.cli.errors import UserError

    try:
        return reader(source)
    except FileNotFoundError:
        raise UserError(f"{option}: {source} not found") from None
    except ValueError as error:
        raise UserError(f"{option}: {error}") from None
