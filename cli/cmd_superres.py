"""``pnp-stable superres``."""

from __future__ import annotations

from pathlib import Path

import click

from pnp_stable.cli.errors import check_level_square, sigterm_as_interrupt, user_errors
from pnp_stable.cli.options import check_kernel_spec, color_option, manual_settings, parse_level, solver_options


@click.command()
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--factor", "-s", type=click.IntRange(2, 16), default=2, show_default=True,
              help="Resolution gain: the result has FACTOR times the rows and columns of IMAGE.")
@click.option("--kernel", "-k", default=None, metavar="SPEC",
              help="Blur before sampling (the specs of `deblur --kernel`) [default: gauss:FACTOR/2].")
@click.option("--noise", default=None, metavar="SIGMA",
              help="Noise std of IMAGE on the [0,1] scale (0 for clean 8-bit data, 0.5/255, 0.01, 1%); estimated if "
                   "omitted (2.55/255 with --simulate).")
@click.option("--simulate", is_flag=True,
              help="IMAGE is a sharp ground truth: blur and sample it, add noise (--noise, --seed), restore it, "
                   "report PSNR/SSIM (against bicubic interpolation).")
@click.option("--boundary", type=click.Choice(["auto", "circular", "reflect", "zero", "valid"]), default="auto",
              show_default=True,
              help="How the blur treats the edges: auto is circular with --simulate and reflect for a real image.")
@color_option
@solver_options(max_iter_default=500, solver_default="admm", output_tag="superres", folders=True)
def superres(image, factor, kernel, noise, simulate, boundary, color, solver, denoiser, max_iter, tol, sigma_den, step,
             strength, accelerate, seed, device, tile, checkpoint, resume, out, report, plot, quiet):
    """Super-resolve IMAGE (or every image in a folder) by FACTOR with a certified PnP solver (the blur and
    sampling model of --kernel).

    Without IMAGE, runs the demo: scikit-image's camera (256x256), blurred, sampled by 2 and restored
    (--simulate).

    \b
    Examples:
      pnp-stable superres
      pnp-stable superres small.png --factor 2 --noise 1/255
      pnp-stable superres sharp.png --simulate --factor 4 --kernel gauss:2 --report sr.json
      pnp-stable superres thumbnails/ --factor 4 --noise 0
    """
    with user_errors(), sigterm_as_interrupt():
        level = parse_level(noise, allow_zero=True)
        check_level_square(level, "--noise")
        manual = manual_settings(sigma_den, step, strength, tile, solver, per_image_state=True)
        from pnp_stable.observations import default_super_resolution_kernel

        kernel_shape = check_kernel_spec(kernel if kernel is not None else default_super_resolution_kernel(factor))
        if image is None:
            simulate = True
        from pnp_stable.cli.folders import check_kernel_fits, run_restorations
        from pnp_stable.restore import super_resolve

        arguments = dict(factor=factor, kernel=kernel, noise_level=level, simulate=simulate, seed=seed,
                         boundary=boundary, method=solver, denoiser=denoiser, max_iter=max_iter, tol=tol,
                         accelerate=accelerate, device=device, color=color, checkpoint=checkpoint,
                         resume=resume, **manual)
        run_restorations("superres", image, tag="superres",
                         demo=f"demo: scikit-image's camera (256x256), sampled by {factor} and super-resolved "
                              "(--simulate)", task=super_resolve, arguments=arguments, out=out, report=report, plot=plot, quiet=quiet,
                         check_image=lambda path, loaded, _: check_kernel_fits(path, loaded, kernel_shape,
                                                                                1 if simulate else factor))
