"""``pnp-stable denoise``."""

from __future__ import annotations

from pathlib import Path

import click

from pnp_stable.cli.errors import user_errors
from pnp_stable.cli.options import color_option, parse_level, tile_option


@click.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--noise", "--sigma", "noise", required=True, metavar="SIGMA",
              help="Noise level (std) on the [0,1] scale (0.1, 25/255, 10%); --sigma is the same option.")
@click.option("--denoiser", default=None, metavar="NAME|PATH",
              help="Shipped denoiser name or a saved .pt file [default: gray; color for RGB images].")
@click.option("--simulate", is_flag=True, help="Add Gaussian noise of std SIGMA first (--seed) and report PSNR/SSIM.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output image (.png, .jpg, .tif or .npy; default: <stem>_denoised.<ext> beside the input; "
                   "never the input).")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Write a JSON report (denoiser and its certificate, noise level, metrics).")
@color_option
@tile_option
@click.option("--quiet", is_flag=True, help="No notes; only the summary line.")
def denoise(image, noise, denoiser, simulate, seed, device, out, report, color, tile, quiet):
    """Apply a denoiser once to IMAGE at noise level SIGMA (to judge a model).

    \b
    Examples:
      pnp-stable denoise noisy.png --noise 25/255
      pnp-stable denoise clean.png --noise 25/255 --simulate
    """
    with user_errors():
        level = parse_level(noise, "noise")
        from pnp_stable.cli.images import default_output, read_image
        from pnp_stable.cli.reporting import check_outputs, finish_restoration

        out_path = Path(out) if out else default_output(image, "denoised")
        check_outputs(image, out=out_path, report=report)
        loaded = read_image(image)  # pnp_stable.restore.denoise checks its range
        from pnp_stable.cli.image_task import as_tensor
        from pnp_stable.restore import denoise as run

        restoration = run(as_tensor(loaded), level, denoiser=denoiser, simulate=simulate, seed=seed, device=device, color=color,
                          tile=tile)
        options = dict(noise=level, simulate=simulate, seed=seed, denoiser=denoiser, device=device, color=color,
                       tile=tile)
        finish_restoration("denoise", restoration, loaded, image, out_path, report, None, options, quiet)
