"""``pnp-stable deblur``."""

from __future__ import annotations

from pathlib import Path

import click

from pnp_stable.cli.errors import check_level_square, sigterm_as_interrupt, user_errors
from pnp_stable.cli.options import check_kernel_spec, color_option, manual_settings, parse_level, solver_options


@click.command()
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--kernel", "-k", default="gauss", show_default=True, metavar="SPEC",
              help="gauss, gauss:1.6, box:9, disk:3, motion:15,30, motion-random:SEED, PATH.npy, Levin09.mat#3 "
                   "(0-based index), FILE.mat:VARIABLE[#INDEX] (a .mat file holding several variables).")
@click.option("--noise", default=None, metavar="SIGMA",
              help="Noise std of the observation on the [0,1] scale (0.01, 2.55/255, 1%); estimated if omitted.")
@click.option("--simulate", is_flag=True,
              help="IMAGE is a clean ground truth: blur it, add noise (--noise, --seed), restore, report PSNR/SSIM.")
@click.option("--boundary", type=click.Choice(["auto", "circular", "reflect", "zero", "valid"]), default="auto",
              show_default=True,
              help="How the blur treats the edges: auto is circular with --simulate (the model that made the "
                   "observation) and reflect for a real image, whose scene goes on beyond its frame.")
@color_option
@solver_options(max_iter_default=500, solver_default="admm", folders=True)
def deblur(image, kernel, noise, simulate, boundary, color, solver, denoiser, max_iter, tol, sigma_den, step, strength, accelerate,
           seed, device, tile, checkpoint, resume, out, report, plot, quiet):
    """Restore a blurred IMAGE (or every image in a folder) with a certified PnP solver.

    Without IMAGE, runs the demo: scikit-image's camera (256x256), blurred and restored (--simulate).

    \b
    Examples:
      pnp-stable deblur
      pnp-stable deblur photo.png --kernel gauss:1.6 --noise 2.55/255
      pnp-stable deblur sharp.png --simulate --kernel motion:15,30 --report r.json --plot r.png
      pnp-stable deblur folder/ --kernel kernels.mat#3 --solver fb
      pnp-stable deblur photo.png --kernel box:9 --sigma-den 8/255 --step 4
      pnp-stable deblur big.png --kernel gauss:1.6 --checkpoint big.state   # Ctrl-C, then again with --resume
    """
    with user_errors(), sigterm_as_interrupt():
        level = parse_level(noise)
        check_level_square(level, "--noise")
        manual = manual_settings(sigma_den, step, strength, tile, solver, per_image_state=True)
        kernel_shape = check_kernel_spec(kernel)
        if image is None:
            simulate = True
        from pnp_stable.cli.folders import check_kernel_fits, run_restorations
        from pnp_stable.restore import deblur as task

        arguments = dict(kernel=kernel, noise_level=level, simulate=simulate, seed=seed, boundary=boundary,
                         method=solver, denoiser=denoiser, max_iter=max_iter, tol=tol, accelerate=accelerate,
                         device=device, color=color, checkpoint=checkpoint,
                         resume=resume, **manual)
        run_restorations("deblur", image, tag="restored",
                         demo="demo: scikit-image's camera (256x256), blurred and restored (--simulate)", task=task,
                         arguments=arguments, out=out, report=report, plot=plot,
                         quiet=quiet, check_image=lambda path, loaded, _: check_kernel_fits(path, loaded, kernel_shape))

