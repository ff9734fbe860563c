"""``pnp-stable inpaint``."""

from __future__ import annotations

from pathlib import Path

import click

from pnp_stable.cli.errors import UserError, check_level_square, check_step, sigterm_as_interrupt, user_errors
from pnp_stable.cli.options import color_option, solver_options


def _parse_noise(text: str | None) -> float | None:
    """``--noise``: the levels of :func:`parse_level`, or any spelling of 0 for noise-free data."""
    from pnp_stable.cli.options import parse_level

    if text is not None:
        s = text.strip()
        try:
            number = float(s[:-1]) if s.endswith("%") else float(s.split("/", 1)[0])
        except ValueError:
            number = None  # parse_level names the problem
        if number == 0:
            return 0.0
    return parse_level(text)


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
    from pnp_stable.cli.options import parse_level

    with user_errors(), sigterm_as_interrupt():
        level = _parse_noise(noise)
        manual = {"sigma_den": parse_level(sigma_den, "sigma-den"), "step": step, "strength": strength, "tile": tile,
                  "checkpoint": checkpoint, "resume": resume}
        if level:
            check_level_square(level, "--noise")
        check_level_square(manual["sigma_den"], "--sigma-den")
        check_step(step, solver)
        if resume and checkpoint is None:
            raise UserError("--resume needs --checkpoint FILE (the state to continue)")
        if image is None:
            simulate = True
        if missing is None and not simulate:
            raise UserError("inpainting an image needs its missing pixels: --missing MASK (white: missing)",
                            hint="or --simulate to remove pixels at random from a complete image")
        mask = None
        if missing is not None:
            from pnp_stable.cli.images import read_image

            if image is None:
                raise UserError("--missing needs an IMAGE (the demo draws its own mask)")
            loaded_mask = read_image(missing)
            if not quiet:
                for note in loaded_mask.notes:
                    click.echo(f"note: {missing.name}: {note}", err=True)
            # white is missing; the threshold ignores a JPEG's ringing around the marks
            mask = (loaded_mask.data.transpose(2, 0, 1) if loaded_mask.is_rgb else loaded_mask.data) >= 0.5
        from pnp_stable.cli.image_task import run_image_command
        from pnp_stable.restore import inpaint as task

        arguments = dict(missing=mask, observed_fraction=observed, noise_level=level, simulate=simulate, seed=seed,
                         method=solver, denoiser=denoiser, max_iter=max_iter, tol=tol, accelerate=accelerate,
                         device=device, color=color, **manual)
        options = dict(arguments, missing=None if missing is None else str(missing), noise=level, solver=solver)
        run_image_command("inpaint", image, "demo: scikit-image's camera (256x256), half its pixels removed at random "
                          "and restored (--simulate)", task, arguments, options, out, report, plot, quiet,
                          tag="inpainted", also_inputs=() if missing is None else (missing,))
