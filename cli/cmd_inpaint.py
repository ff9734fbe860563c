"""``pnp-stable inpaint``."""

from __future__ import annotations

from pathlib import Path

import click

from pnp_stable.cli.errors import UserError, check_level_square, sigterm_as_interrupt, user_errors
from pnp_stable.cli.options import color_option, manual_settings, parse_level, solver_options


def _read_mask(path: Path, quiet: bool):
    """The missing-pixel mask of ``--missing``: an image file is thresholded at 50 % grey (white:
    missing; a JPEG's ringing ignored); a ``.npy`` keeps its values, nonzero meaning missing, as in
    the API (an 8/16-bit or label array is not rescaled first)."""
    from pnp_stable.cli.images import read_image, read_npy

    if path.suffix.lower() == ".npy":
        array = read_npy(path)
        if array.ndim == 3 and array.shape[-1] in (3, 4) and array.shape[0] not in (1, 3):
            array = array[..., :3].transpose(2, 0, 1)  # H x W x C, as an image file would be
        return array
    loaded = read_image(path)
    if not quiet:
        for note in loaded.notes:
            click.echo(f"note: {path.name}: {note}", err=True)
    return (loaded.data.transpose(2, 0, 1) if loaded.is_rgb else loaded.data) >= 0.5


@click.command()
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--missing", type=click.Path(path_type=Path), default=None, metavar="MASK",
              help="Image of IMAGE's size whose white pixels (>= 50% grey) are missing, to be filled; a colour mask "
                   "marks missing values per channel.")
@click.option("--observed", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="With --simulate and no --missing: the fraction of pixels kept, drawn at random (--seed).")
@click.option("--noise", default=None, metavar="SIGMA",
              help="Noise std of the observed pixels on the [0,1] scale (0 for none, 0.01, 2.55/255, 1%); "
                   "estimated from fully observed 2x2 blocks if omitted (none with --simulate).")
@click.option("--simulate", is_flag=True,
              help="IMAGE is a complete ground truth: remove pixels (--missing, or --observed at random), add noise "
                   "(--noise), restore, report PSNR/SSIM (against a smooth fill).")
@color_option
@solver_options(max_iter_default=500, solver_default="admm", output_tag="inpainted")
def inpaint(image, missing, observed, noise, simulate, color, solver, denoiser, max_iter, tol, sigma_den, step,
            strength, accelerate, seed, device, tile, checkpoint, resume, out, report, plot, quiet):
    """Fill the missing pixels of IMAGE (and denoise the others) with a certified PnP solver.

    Without IMAGE, runs the demo: scikit-image's camera (256x256) with half its pixels removed at
    random, restored (--simulate).

    \b
    Examples:
      pnp-stable inpaint
      pnp-stable inpaint photo.png --missing scratches.png
      pnp-stable inpaint sharp.png --simulate --observed 0.2 --noise 2.55/255 --report inpaint.json
    """
    with user_errors(), sigterm_as_interrupt():
        level = parse_level(noise, allow_zero=True)
        check_level_square(level, "--noise")
        manual = manual_settings(sigma_den, step, strength, tile, solver, checkpoint, resume)
        if image is None:
            simulate = True
        if missing is None and not simulate:
            raise UserError("inpainting an image needs its missing pixels: --missing MASK (white: missing)",
                            hint="or --simulate to remove pixels at random from a complete image")
        mask = None
        if missing is not None:
            if image is None:
                raise UserError("--missing needs an IMAGE (the demo draws its own mask)")
            mask = _read_mask(missing, quiet)
        from pnp_stable.cli.image_task import run_image_command
        from pnp_stable.restore import inpaint as task

        arguments = dict(missing=mask, observed_fraction=observed, noise_level=level, simulate=simulate, seed=seed,
                         method=solver, denoiser=denoiser, max_iter=max_iter, tol=tol, accelerate=accelerate,
                         device=device, color=color, **manual)
        run_image_command("inpaint", image, "demo: scikit-image's camera (256x256), half its pixels removed at random "
                          "and restored (--simulate)", task, arguments, out, report, plot, quiet, tag="inpainted",
                          also_inputs=() if missing is None else (missing,),
                          reported={"missing": None if missing is None else str(missing)})
