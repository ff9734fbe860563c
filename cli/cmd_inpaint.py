"""``pnp-stable inpaint``."""

from __future__ import annotations

from pathlib import Path

import click

from pnp_stable.cli.errors import UserError, check_level_square, sigterm_as_interrupt, user_errors
from pnp_stable.cli.options import color_option, manual_settings, parse_level, solver_options


def _read_mask(path: Path, quiet: bool):
    """The missing-pixel mask of ``--missing``: an image file is thresholded at 50 % grey (white:
    missing; a JPEG's ringing ignored), or at 50 % opacity when it has an alpha channel that is
    partly transparent (opaque: missing); a ``.npy`` keeps its values, nonzero meaning missing, as
    in the API (an 8/16-bit or label array is not rescaled first)."""
    from pnp_stable.cli.images import read_image, read_npy

    if path.suffix.lower() == ".npy":
        array = read_npy(path)
        if array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.shape[0] not in (1, 3):
            array = array[..., :3].transpose(2, 0, 1)  # H x W x C, as an image file would be
        return array
    loaded = read_image(path)
    alpha = loaded.alpha
    by_colour = (loaded.data.transpose(2, 0, 1) if loaded.is_rgb else loaded.data) >= 0.5
    # strokes painted on a transparent layer: the alpha channel is the mask (its colours, often
    # white under full transparency, would mark everything missing). Only when the opaque pixels
    # say nothing by their colours (one colour, strokes of one pen): a black-and-white mask with a
    # transparent margin keeps its colours
    layer = alpha is not None and float(alpha.min()) < 0.5 <= float(alpha.max())
    if layer:
        opaque = (by_colour[:, alpha >= 0.5] if by_colour.ndim == 3 else by_colour[None, alpha >= 0.5])
        layer = bool((opaque == opaque[:, :1]).all())
    if not quiet:
        for note in loaded.notes:
            if not (layer and note == "alpha channel ignored"):
                click.echo(f"note: {path.name}: {note}", err=True)
        if layer:
            click.echo(f"note: {path.name}: its alpha channel marks the missing pixels (opaque: missing), as a "
                       "transparent layer's strokes do", err=True)
    if layer:
        return alpha >= 0.5
    return by_colour


@click.command()
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--missing", type=click.Path(path_type=Path), default=None, metavar="MASK|DIR",
              help="Image of IMAGE's size whose white pixels (>= 50% grey) are missing, to be filled; a colour mask "
                   "marks missing values per channel; a .npy mask's nonzero entries are missing (not rescaled). A "
                   "folder (not the images' own) holds one mask per image, named as the image (a.png or a.npy for "
                   "a.jpg); one MASK file serves every image of a folder.")
@click.option("--observed", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="With --simulate and no --missing: the fraction of pixels kept, drawn at random (--seed).")
@click.option("--noise", default=None, metavar="SIGMA",
              help="Noise std of the observed pixels on the [0,1] scale (0 for none, 0.01, 2.55/255, 1%); "
                   "estimated from fully observed 2x2 blocks if omitted (none with --simulate).")
@click.option("--simulate", is_flag=True,
              help="IMAGE is a complete ground truth: remove pixels (--missing, or --observed at random), add noise "
                   "(--noise), restore, report PSNR/SSIM (against a smooth fill).")
@color_option
@solver_options(max_iter_default=500, solver_default="admm", output_tag="inpainted", folders=True)
def inpaint(image, missing, observed, noise, simulate, color, solver, denoiser, max_iter, tol, sigma_den, step,
            strength, accelerate, seed, device, tile, checkpoint, resume, out, report, plot, quiet):
    """Fill the missing pixels of IMAGE, or of every image in a folder (and denoise the others), with a
    certified PnP solver.

    Without IMAGE, runs the demo: scikit-image's camera (256x256) with half its pixels removed at
    random, restored (--simulate).

    \b
    Examples:
      pnp-stable inpaint
      pnp-stable inpaint photo.png --missing scratches.png
      pnp-stable inpaint frames/ --missing dead_pixels.png
      pnp-stable inpaint scans/ --missing masks/
      pnp-stable inpaint sharp.png --simulate --observed 0.2 --noise 2.55/255 --report inpaint.json
    """
    with user_errors(), sigterm_as_interrupt():
        if not observed == observed:  # NaN passes click's range check (every comparison is False)
            raise UserError("--observed must be a fraction in (0, 1], got nan")
        level = parse_level(noise, allow_zero=True)
        check_level_square(level, "--noise")
        manual = manual_settings(sigma_den, step, strength, tile, solver, per_image_state=True)
        if image is None:
            simulate = True
        if missing is None and not simulate:
            raise UserError("inpainting an image needs its missing pixels: --missing MASK (white: missing)",
                            hint="or --simulate to remove pixels at random from a complete image")
        if missing is not None:
            if image is None:
                raise UserError("--missing needs an IMAGE (the demo draws its own mask)")
            if not missing.exists():
                raise UserError(f"mask {missing} not found (--missing)")
            if missing.is_dir() and image.is_dir() and missing.resolve() == image.resolve():
                raise UserError("--missing names the folder of the images: put the masks in a folder of their own",
                                hint="e.g. scans/masks/, with a mask per image named as the image")
        from pnp_stable.cli.folders import run_restorations
        from pnp_stable.restore import inpaint as task

        arguments = dict(missing=None, observed_fraction=observed, noise_level=level, simulate=simulate, seed=seed,
                         method=solver, denoiser=denoiser, max_iter=max_iter, tol=tol, accelerate=accelerate,
                         device=device, color=color, checkpoint=checkpoint, resume=resume, **manual)
        masks = _Masks(missing, quiet, color, simulate, level)
        run_restorations("inpaint", image, tag="inpainted",
                         demo="demo: scikit-image's camera (256x256), half its pixels removed at random and restored "
                              "(--simulate)", task=task, arguments=arguments, out=out, report=report, plot=plot,
                         quiet=quiet, inputs_for=masks.inputs_for, check_image=masks.check,
                         allow_nonfinite=missing is not None and not simulate)  # NaN may mark a real image's holes


class _Masks:
    """The masks of ``--missing``: one file for every image, or a folder of one per image (named as
    the image), read when an image's turn comes; a mask's notes are said once."""

    def __init__(self, missing: Path | None, quiet: bool, color: str, simulate: bool,
                 noise_level: float | None) -> None:
        self.missing, self.quiet, self.color, self.simulate = missing, quiet, color, simulate
        self.noise_level = noise_level
        self.noted: set[Path] = set()

    def file_for(self, image: Path) -> Path:
        """The mask of ``image``: ``--missing`` itself, or in its folder the one file named as the
        image (any image type)."""
        from pnp_stable.cli.images import IMAGE_SUFFIXES

        missing = self.missing
        if not missing.is_dir():
            return missing
        found = sorted(p for p in missing.iterdir()
                       if p.is_file() and p.stem == image.stem and p.suffix.lower() in IMAGE_SUFFIXES)
        exact = [p for p in found if p.name == image.name]
        found = exact or found  # a.png and a.tif each with its own mask of the same name
        if not found:
            raise UserError(f"no mask for {image.name} in {missing} (a mask is named as its image: "
                            f"{image.stem}.png, {image.stem}.npy ...)")
        if len(found) > 1:
            raise UserError(f"{len(found)} masks for {image.name} in {missing}: " + ", ".join(p.name for p in found),
                            hint="keep one mask per image")
        if found[0].resolve() == image.resolve():
            raise UserError(f"--missing {missing} holds {image.name} itself: put the masks in a folder of their own")
        return found[0]

    def inputs_for(self, image: Path | None):
        """The task inputs of ``image``'s mask (none for a random one)."""
        from pnp_stable.cli.folders import NO_INPUTS, ImageInputs

        if self.missing is None:
            return NO_INPUTS
        mask = self.file_for(image)
        return ImageInputs(files=(mask,), reported={"missing": str(mask)}, read=lambda: {"missing": self.read(mask)})

    def read(self, mask: Path):
        quiet = self.quiet or mask in self.noted
        self.noted.add(mask)
        return _read_mask(mask, quiet)

    def check(self, path: Path, loaded, inputs) -> None:
        """A folder's image against its mask, before the first is restored: what the task would
        refuse (the mask's size, a mask per channel channel by channel) and the image's values:
        finite and in range where a pixel is observed (under a real image's mask they are no data;
        a simulation's image is its ground truth whole)."""
        from pnp_stable.cli.image_task import as_tensor
        from pnp_stable.observations import observed_mask, without_missing_values
        from pnp_stable.restore import check_unit_range

        image = as_tensor(loaded)
        mask = None if self.missing is None else _read_mask(inputs.files[0], quiet=True)
        if mask is not None:
            try:
                observed = observed_mask(mask, image)
            except ValueError as error:
                raise UserError(f"{path.name}: {error}") from None
            if observed.shape[0] > 1 and self.color == "per-channel":
                raise UserError(f"{path.name}: its mask marks each colour channel apart, which needs the opponent "
                                "colour mode (--color opponent); channel by channel, one H x W mask serves the three")
            if not self.simulate:
                image = without_missing_values(image, mask)
        if not bool(image.isfinite().all()):
            where = " where its mask marks no pixel missing" if mask is not None and not self.simulate else ""
            raise UserError(f"{path.name} contains NaN or infinite values{where}")
        check_unit_range(image, str(path))
        if mask is not None and self.noise_level is None and not self.simulate:
            from pnp_stable.solvers import estimate_noise_level

            try:  # the task estimates the noise from the fully observed 2x2 blocks
                estimate_noise_level(image[None], observed.expand_as(image)[None])
            except ValueError:
                raise UserError(f"{path.name}: its mask ({inputs.files[0].name}) leaves no 2x2 block fully observed, "
                                "so the noise level cannot be estimated", hint="give it (--noise)") from None
