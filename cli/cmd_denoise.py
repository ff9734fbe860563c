"""``pnp-stable denoise``."""

from __future__ import annotations

from pathlib import Path

import click

from pnp_stable.cli.errors import sigterm_as_interrupt, user_errors
from pnp_stable.cli.options import color_option, parse_level, tile_option


@click.command()
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--noise", "--sigma", "noise", default=None, metavar="SIGMA",
              help="Noise level (std) on the [0,1] scale (0.1, 25/255, 10%); estimated from the image if omitted "
                   "(25/255 with --simulate); --sigma is the same option.")
@click.option("--denoiser", default=None, metavar="NAME|PATH",
              help="Shipped denoiser name or a saved .pt file [default: gray; color for RGB images].")
@click.option("--simulate", is_flag=True, help="Add Gaussian noise of std SIGMA first (--seed) and report PSNR/SSIM.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output image (.png, .jpg, .tif or .npy; default: <stem>_denoised.<ext> beside the input; "
                   "never the input).")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Write a JSON report (denoiser and its certificate, noise level, metrics); with a folder, one "
                   "file per image (FILE's stem + the image's).")
@color_option
@tile_option
@click.option("--quiet", is_flag=True, help="No notes; only the summary line.")
def denoise(image, noise, denoiser, simulate, seed, device, out, report, color, tile, quiet):
    """Apply a denoiser once to IMAGE (or to every image in a folder) at noise level SIGMA (to judge a
    model, or to clean a noisy photograph).

    Without IMAGE, runs the demo: scikit-image's camera (256x256) with noise of std 25/255 added,
    denoised (--simulate).

    \b
    Examples:
      pnp-stable denoise
      pnp-stable denoise noisy.png --noise 25/255
      pnp-stable denoise noisy.png                      # the noise level is estimated
      pnp-stable denoise clean.png --noise 25/255 --simulate
      pnp-stable denoise photos/ --noise 10/255
    """
    with user_errors(), sigterm_as_interrupt():
        level = parse_level(noise, "noise")
        if image is None:
            simulate = True
        from pnp_stable.cli.folders import run_restorations
        from pnp_stable.restore import denoise as run

        def task(tensor, progress, **arguments):  # one denoiser call: nothing to show progress of
            return run(tensor, **arguments)

        arguments = dict(noise_level=level, simulate=simulate, seed=seed, denoiser=denoiser, device=device,
                         color=color, tile=tile)
        sigma = "25/255" if level is None else f"{level * 255:.3g}/255"
        run_restorations("denoise", image, tag="denoised",
                         demo=f"demo: scikit-image's camera (256x256), noise of std {sigma} added and denoised "
                              "(--simulate)", task=task, arguments=arguments, out=out, report=report, plot=None,
                         quiet=quiet)
