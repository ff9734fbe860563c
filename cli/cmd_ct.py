"""``pnp-stable ct``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource

from pnp_stable.cli.errors import UserError, check_level_square, sigterm_as_interrupt, user_errors
from pnp_stable.cli.options import manual_settings, parse_level, solver_options
from pnp_stable.cli.reporting import check_outputs, finish_restoration, solver_warnings


@click.command()
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option("--angles", type=click.IntRange(1, 10000), default=60, show_default=True,
              help="Number of projection angles, uniform over [0, 180) degrees, for --simulate and the demo; "
                   "a sinogram's angles are its columns.")
@click.option("--simulate", is_flag=True,
              help="DATA is a square phantom image: project it, add noise, reconstruct, report PSNR/SSIM.")
@click.option("--noise", default=None, metavar="SIGMA",
              help="Noise std of the sinogram (absolute, e.g. 0.5, or 1% of its max with --simulate); "
                   "estimated if omitted.")
@click.option("--size", type=click.IntRange(8, 8192), default=None,
              help="Image size N (N x N) for a sinogram input; inferred from the detector count if omitted.")
@click.option("--from-skimage", is_flag=True,
              help="SINOGRAM was made by skimage.transform.radon (angles uniform over [0, 180)): move it to this "
                   "tool's rotation axis first (half a pixel apart for an even detector count).")
@solver_options(max_iter_default=300, solver_default="admm", rgb=False, output_tag="reconstructed")
def ct(data, angles, simulate, noise, size, from_skimage, solver, denoiser, max_iter, tol, sigma_den, step, strength, accelerate,
       seed, device, tile, checkpoint, resume, out, report, plot, quiet):
    """Parallel-beam CT reconstruction from a SINOGRAM (n_detectors x n_angles, .npy/.tif/.png), FBP-initialised.

    Without DATA, runs the demo: a 256x256 Shepp-Logan phantom, 60 angles, 1% noise (--simulate).

    \b
    Examples:
      pnp-stable ct
      pnp-stable ct phantom.png --simulate --angles 180 --report ct.json
      pnp-stable ct sinogram.npy --size 256
    """
    with user_errors(), sigterm_as_interrupt():
        manual = manual_settings(sigma_den, step, strength, tile, solver, checkpoint, resume)
        if from_skimage and (simulate or data is None):
            raise UserError("--from-skimage converts a sinogram; with --simulate the sinogram is made here")
        level = None
        if noise is not None:
            text = noise.strip()
            if text.endswith("%"):
                if not simulate and data is not None:
                    raise UserError("--noise as a percentage needs --simulate (it is relative to the clean sinogram)")
                level = ("relative", parse_level(text))
            else:
                try:
                    value = float(text)
                except ValueError:
                    raise UserError(f"--noise {noise!r} is not a number") from None
                if not value > 0:
                    raise UserError("--noise must be positive")
                check_level_square(value, "--noise")
                level = ("absolute", value)
        from pnp_stable.cli.images import LoadedImage, default_output, read_image

        if data is None:
            import numpy as np
            from skimage import data as skdata
            from skimage import transform

            phantom = transform.resize(skdata.shepp_logan_phantom(), (256, 256), anti_aliasing=True)
            loaded, simulate = LoadedImage(np.clip(phantom, 0, 1).astype(np.float32), 8, None), True
            if not quiet:
                click.echo(f"demo: Shepp-Logan phantom (256x256), {angles} angles, reconstructed (--simulate)",
                           err=True)
        else:
            loaded = read_image(data)
            if loaded.is_rgb:
                raise UserError(f"{data.name} is an RGB image; CT data must be gray")
            angles_given = click.get_current_context().get_parameter_source("angles") != ParameterSource.DEFAULT
            if not simulate and angles_given and loaded.data.shape[1] != angles:
                raise UserError(f"{data.name} has {loaded.data.shape[1]} angles (columns; a sinogram is "
                                f"n_detectors x n_angles) but --angles is {angles}",
                                hint="a sinogram's angles are its columns: drop --angles, or transpose it")
            if from_skimage and not simulate:
                import numpy as np

                from pnp_stable.operators.ct import sinogram_from_skimage

                converted = sinogram_from_skimage(loaded.data).astype(np.float32)
                loaded = LoadedImage(converted, loaded.bit_depth, loaded.path,
                                     (*loaded.notes, "sinogram moved from skimage.transform.radon's rotation axis "
                                                     "to this tool's (docs/operators.md)"))
        out_path = Path(out) if out else default_output(data if data else Path("shepp_logan.png"),
                                                        "reconstructed", ext=None if data else ".png")
        check_outputs(data, out=out_path, report=report, plot=plot, checkpoint=checkpoint)
        import torch

        from pnp_stable.restore import reconstruct_ct

        tensor = torch.from_numpy(loaded.data)[None]
        absolute = level[1] if level is not None and level[0] == "absolute" else None
        relative = level[1] if level is not None and level[0] == "relative" else None
        with solver_warnings(quiet):
            # a sinogram's angles are its columns (an explicit --angles that differs was refused above)
            restoration = reconstruct_ct(tensor, angles=angles if simulate else None, simulate=simulate,
                                         noise_level=absolute, relative_noise_level=relative, seed=seed,
                                         image_size=size, method=solver, denoiser=denoiser, max_iter=max_iter, tol=tol,
                                         accelerate=accelerate, device=device, progress=not quiet, **manual)
        options = dict(angles=angles, simulate=simulate, noise=noise, size=size, solver=solver, denoiser=denoiser,
                       max_iter=max_iter, tol=tol, accelerate=accelerate, seed=seed, device=device, **manual)
        # a sinogram's bit depth says nothing of the reconstruction's: 16 bits for an image file
        finish_restoration("ct", restoration, loaded, data, out_path, report, plot, options, quiet,
                           output_bit_depth=None if simulate else 16)
        if restoration.result.stopped_by == "interrupted":
            click.echo("interrupted", err=True)
            sys.exit(130)
