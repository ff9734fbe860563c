"""``pnp-stable denoise``."""

from __future__ import annotations

from pathlib import Path

import click

from pnp_stable.cli.errors import user_errors
from pnp_stable.cli.options import color_option, parse_level, tile_option


@click.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--sigma", required=True, metavar="SIGMA",
              help="Noise level on the [0,1] scale (0.1, 25/255, 10%).")
@click.option("--denoiser", default=None, metavar="NAME|PATH",
              help="Shipped denoiser name or a saved .pt file [default: gray; color for RGB images].")
@click.option("--simulate", is_flag=True, help="Add Gaussian noise of std SIGMA first (--seed) and report PSNR.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output image (.png, .jpg, .tif or .npy; default: <stem>_denoised.<ext> beside the input; "
                   "never the input).")
@color_option
@tile_option
@click.option("--quiet", is_flag=True, help="No notes; only the summary line.")
def denoise(image, sigma, denoiser, simulate, seed, device, out, color, tile, quiet):
    """Apply a denoiser once to IMAGE at noise level SIGMA (to judge a model).

    \b
    Examples:
      pnp-stable denoise noisy.png --sigma 25/255
      pnp-stable denoise clean.png --sigma 25/255 --simulate
    """
    with user_errors():
        level = parse_level(sigma, "sigma")
        from pnp_stable.cli.images import default_output, read_image, write_image
        from pnp_stable.cli.reporting import check_outputs

        out_path = Path(out) if out else default_output(image, "denoised")
        check_outputs(image, out=out_path)
        loaded = read_image(image)  # pnp_stable.restore.denoise checks its range
        import torch

        from pnp_stable.restore import denoise as run

        tensor = torch.from_numpy(loaded.data)
        tensor = tensor.permute(2, 0, 1) if loaded.is_rgb else tensor[None]
        result, report = run(tensor, level, denoiser=denoiser, simulate=simulate, seed=seed, device=device, color=color,
                             tile=tile)
        arr = result.permute(1, 2, 0).numpy() if result.shape[0] == 3 else result[0].numpy()
        write_image(out_path, arr, loaded.bit_depth if out_path.suffix.lower() != ".npy" else None, protect=(image,))
        if not quiet:
            for note in list(loaded.notes) + report["notes"]:
                click.echo(f"note: {note}", err=True)
        m = report["metrics"]
        extra = f"  PSNR {m['psnr']:.2f} dB (noisy {m['psnr_input']:.2f})" if "psnr" in m else ""
        click.echo(f"denoised {out_path}{extra}  sigma {level * 255:.2f}/255  {m['time_s']:.2f} s")
