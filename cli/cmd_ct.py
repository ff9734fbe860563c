"""``pnp-stable ct``."""

from __future__ import annotations

import math
from pathlib import Path

import click
from click.core import ParameterSource

from pnp_stable.cli.errors import UserError, check_level_square, sigterm_as_interrupt, user_errors
from pnp_stable.cli.options import manual_settings, parse_level, read_option_file, solver_options


@click.command()
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option("--angles", default="60", show_default=True, metavar="N|FILE",
              help="Projection angles: a count N, uniform over [0, 180) degrees (for --simulate and the demo; a "
                   "sinogram's count is its columns), or a FILE of angles in degrees, one per sinogram column "
                   "(.txt/.csv: numbers separated by spaces, commas or lines; .npy: a 1-D array), e.g. for a "
                   "360-degree or limited-angle scan. With --geometry fan a count is uniform over [0, 360) "
                   "(default 120).")
@click.option("--angle-range", default=None, metavar="DEGREES|short",
              help="Spread a count of angles (--angles N, or a sinogram's columns) uniformly over [0, DEGREES) "
                   "instead of the half turn (fan: the full turn): a limited-angle scan, or with --geometry fan "
                   "'short', a short scan of 180 degrees plus the fan angle, which measures every line.")
@click.option("--simulate", is_flag=True,
              help="DATA is a square phantom image: project it, add noise, reconstruct, report PSNR/SSIM.")
@click.option("--noise", default=None, metavar="SIGMA",
              help="Noise std of the sinogram (absolute, e.g. 0.5, or 1% of its max with --simulate); "
                   "estimated if omitted.")
@click.option("--photons", default=None, metavar="I0|auto",
              help="Photon-count (Poisson) data: I0 incident photons per detector bin. With --simulate the counts "
                   "are drawn (instead of Gaussian noise); a sinogram is read as post-log line integrals "
                   "-log(I/I0) (auto: I0 read off its noise). The noise level follows from the counts, and the "
                   "data term is weighted by them (--weighting).")
@click.option("--weighting", type=click.Choice(["auto", "gls", "wls", "none"]), default="auto", show_default=True,
              help="With --photons or --flat: wls, weighted least squares with the photon counts as weights; gls "
                   "(--flat FILE only), the same whitening the flat's own noise too, an error every view of a bin "
                   "shares (its fine rings); none, plain least squares; auto: gls for a flat of at most two known "
                   "exposures (two frames, or --flat-exposures 1 or 2), else wls.")
@click.option("--attenuation", type=float, default=None, metavar="MU",
              help="With --simulate --photons: attenuation per pixel of a phantom value 1 [default: the longest "
                   "ray attenuated by e^-4].")
@click.option("--flat", default=None, metavar="FILE|VALUE",
              help="DATA is a raw transmission sinogram (detector readings before the logarithm) and this its flat "
                   "field, the exposure without the object: a FILE (.npy/.tif/.png, read unscaled) of one value per "
                   "detector bin (the sinogram's rows), or of several frames side by side, or one VALUE for every bin. "
                   "The data become line integrals -log((I - dark)/(flat - dark)), weighted by their photon counts "
                   "(--weighting).")
@click.option("--flat-exposures", type=int, default=None, metavar="K",
              help="With --flat of one frame: the exposures it averages (1: a raw frame), so that its noise, shared "
                   "by every view of a bin, is modelled (by --weighting auto for 1 or 2, and gls; and in a gain read "
                   "off the noise) [default: unknown; frames given count].")
@click.option("--dark", default=None, metavar="FILE|VALUE",
              help="With --flat: the detector's dark field (its offset), as --flat [default: 0].")
@click.option("--gain", type=float, default=None, metavar="UNITS",
              help="With --flat: detector units per photon [default: measured from two or more flat frames, "
                   "else read off the sinogram's noise].")
@click.option("--projections", is_flag=True,
              help="DATA is a stack of parallel-beam projections, one per angle (angles x rows x columns: a 3-D .npy, "
                   "memory-mapped, a multi-page TIFF, or a folder of one image per angle in the order of their "
                   "names): each detector row is a slice's sinogram, and the volume (slices x N x N, float32 .npy or "
                   "multi-page .tif) is reconstructed slice by slice; --flat/--dark then hold one frame (rows x "
                   "columns) or frames (k x rows x columns, or a folder of them). The gain, --photons auto and "
                   "--detector-offset auto are measured once for all slices; --checkpoint keeps the finished ones.")
@click.option("--axis-tilt", default=None, metavar="DEGREES|auto",
              help="With --projections: the rotation axis's image on the detector turns this many degrees from its "
                   "columns (positive: its column grows with the row; at most 5), or auto to read it off the "
                   "projections: off views half a turn apart where the scan has them (a full turn of an even number "
                   "of views, e.g. --angle-range 360, or a last view at 180; any object, longer than the detector "
                   "too), else off "
                   "their centres of mass (the object whole on the detector, off the axis); slices are then "
                   "taken perpendicular to the axis, and --detector-offset is the axis's offset at the middle row "
                   "[default: 0, along the columns].")
@click.option("--rows", default=None, metavar="R|A:B",
              help="With --projections: the detector rows to reconstruct, one (R) or a range (A:B, rows A to B-1; "
                   "either end may be left out), from 0 [default: all].")
@click.option("--workers", default=None, metavar="N|auto",
              help="With --projections: solve N slices at once in N processes (auto: one per core), each with its "
                   "share of the cores; one process leaves most cores idle, as a CT solve's projections run on one "
                   "core per slice. Each process holds its own copy of the denoiser and the projector. CPU only "
                   "[default: 1].")
@click.option("--size", type=click.IntRange(8, 8192), default=None,
              help="Image size N (N x N) for a sinogram input; inferred from the detector count if omitted.")
@click.option("--detector", type=click.Choice(["full", "circle"]), default="full", show_default=True,
              help="full: ceil(sqrt(2) N) detectors covering the whole N x N square; circle: N detectors that see the "
                   "inscribed disc only (skimage.transform.radon's default circle=True); the reconstruction is 0 "
                   "outside it.")
@click.option("--geometry", type=click.Choice(["parallel", "fan"]), default="parallel", show_default=True,
              help="fan: a fan beam, the source circling the image centre (distances in image pixels below; a "
                   "sinogram's rows are the detector cells, and --size is needed).")
@click.option("--source-distance", type=float, default=None, metavar="PIXELS",
              help="Fan beam: source to image centre [default: 2 N].")
@click.option("--detector-distance", type=float, default=None, metavar="PIXELS",
              help="Fan beam: image centre to detector [default: N].")
@click.option("--detector-spacing", type=float, default=None, metavar="PIXELS",
              help="Fan beam: distance between detector cells, on the detector [default: the magnification, "
                   "one cell per pixel at the centre].")
@click.option("--detector-shape", type=click.Choice(["flat", "curved"]), default=None,
              help="Fan beam: flat (a line) or curved (an arc centred on the source, cells equally spaced in fan "
                   "angle, --detector-spacing measured along it: clinical scanners) [default: flat].")
@click.option("--detector-offset", default=None, metavar="CELLS|auto",
              help="The detector's cells shifted along it by this many cells, in the bins' order: a fan beam's "
                   "quarter-cell offset (0.25), or a parallel beam's misaligned rotation axis (it projects onto bin "
                   "(G-1)/2 - CELLS); auto reads a parallel-beam sinogram's axis off the data [default: 0, centred].")
@click.option("--from-skimage", is_flag=True,
              help="SINOGRAM was made by skimage.transform.radon (angles uniform over [0, 180) unless --angles FILE "
                   "or --angle-range; "
                   "with circle=True, its default, add --detector circle): move it to this tool's rotation axis, "
                   "the image centre, first (skimage turns about pixel N//2).")
@solver_options(max_iter_default=300, solver_default="admm", rgb=False, output_tag="reconstructed", folders=True)
def ct(data, angles, angle_range, simulate, noise, photons, weighting, attenuation, flat, flat_exposures, dark, gain,
       projections, axis_tilt, rows, workers,
       size, detector,
       geometry,
       source_distance, detector_distance, detector_spacing, detector_shape, detector_offset,
       from_skimage, solver, denoiser, max_iter, tol, sigma_den, step, strength, accelerate,
       seed, device, tile, checkpoint, resume, out, report, plot, quiet):
    """Parallel-beam (or fan-beam) CT reconstruction from a SINOGRAM (n_detectors x n_angles, .npy/.tif/.png),
    or from every sinogram in a folder (a stack of slices), FBP-initialised; with --projections, a volume from a
    stack of parallel-beam projections (angles x rows x columns), slice by slice.

    Without DATA, runs the demo: a 256x256 Shepp-Logan phantom, 60 angles (with --geometry fan, 120 views
    over 360 degrees), 1% noise (with --photons, Poisson counts) (--simulate).

    \b
    Examples:
      pnp-stable ct
      pnp-stable ct phantom.png --simulate --angles 180 --report ct.json
      pnp-stable ct sinogram.npy --size 256
      pnp-stable ct skimage_sinogram.npy --from-skimage --detector circle
      pnp-stable ct --geometry fan
      pnp-stable ct --geometry fan --angles 74 --angle-range short
      pnp-stable ct --photons 1e4 --angles 180
      pnp-stable ct lowdose_sinogram.npy --photons 5e4 --size 512
      pnp-stable ct lowdose_sinogram.npy --photons auto --size 512
      pnp-stable ct raw_sinogram.tif --flat flat_frames.tif --dark dark_frames.tif
      pnp-stable ct fan_sinogram.npy --geometry fan --size 256 --source-distance 600 --detector-distance 400
      pnp-stable ct --geometry fan --detector-shape curved
      pnp-stable ct synchrotron_sinogram.npy --detector-offset auto
      pnp-stable ct projections.tif --projections --flat flats.tif --dark darks.tif --rows 100:140
      pnp-stable ct slices/ --size 512 --checkpoint slices.state
    """
    with user_errors(), sigterm_as_interrupt():
        manual = manual_settings(sigma_den, step, strength, tile, solver, per_image_state=True)
        if from_skimage and (simulate or data is None):
            raise UserError("--from-skimage converts a sinogram; with --simulate the sinogram is made here")
        context = click.get_current_context()
        fan = geometry == "fan"
        if fan and from_skimage:
            raise UserError("--from-skimage converts a parallel-beam sinogram (skimage.transform.radon); not with "
                            "--geometry fan")
        if fan and context.get_parameter_source("detector") != ParameterSource.DEFAULT:
            raise UserError("--detector is the parallel beam's; a fan beam's cells are the sinogram's rows, "
                            "spaced by --detector-spacing")
        distances = {"source_distance": source_distance, "detector_distance": detector_distance,
                     "detector_spacing": detector_spacing}
        for name, value in distances.items():
            if value is not None and not fan:
                raise UserError(f"--{name.replace('_', '-')} describes a fan beam: add --geometry fan")
            if value is not None and not (value > 0 and value < float("inf")):
                raise UserError(f"--{name.replace('_', '-')} must be a positive number of pixels, got {value:g}")
        if detector_shape is not None:
            if not fan:
                raise UserError("--detector-shape describes a fan beam's detector: add --geometry fan")
            distances["detector_shape"] = detector_shape
        detector_offset = parse_detector_offset(detector_offset, fan, simulate or data is None, detector == "circle")
        distances["detector_offset"] = detector_offset
        if size is not None and (simulate or data is None):
            raise UserError("--size is a sinogram's image size; a phantom (--simulate, the demo) has its own")
        if fan and not simulate and data is not None and size is None:
            raise UserError("a fan-beam sinogram needs the image size: pass --size N")
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
        if data is None:
            simulate = True
        if photons is not None:
            photons = parse_photons(photons, simulate)
            if noise is not None:
                raise UserError("--photons draws Poisson counts (the noise follows from them); --noise is Gaussian: "
                                "give one of them")
        elif weighting == "gls" and flat is None:
            raise UserError("--weighting gls models a measured flat field's own noise: add its frames (--flat FILE)")
        elif weighting != "auto" and flat is None:
            raise UserError("--weighting applies to photon-count data: add --photons I0 (or --flat for raw data)")
        if projections:
            _check_projection_options(data, simulate, from_skimage, fan, context)
        elif rows is not None:
            raise UserError("--rows selects detector rows of a projection stack: add --projections")
        elif workers is not None:
            raise UserError("--workers solves the slices of a projection stack at once: add --projections")
        elif axis_tilt is not None:
            raise UserError("--axis-tilt describes a measured projection stack's rotation axis (a sinogram or a "
                            "simulation has none to tilt): add --projections and the stack")
        axis_tilt = parse_axis_tilt(axis_tilt)
        workers = parse_workers(workers)
        readings = _raw_readings(data, flat, dark, gain, simulate, photons, noise, from_skimage, projections)
        _check_flat_noise_options(readings, weighting, flat_exposures)
        if attenuation is not None:
            if photons is None or not simulate:
                raise UserError("--attenuation scales a phantom for a photon-count simulation: add --simulate and "
                                "--photons")
            if not (attenuation > 0 and attenuation < float("inf")):
                raise UserError(f"--attenuation must be a positive number per pixel, got {attenuation:g}")
        angles_given = context.get_parameter_source("angles") != ParameterSource.DEFAULT
        angles = parse_angles(angles) if angles_given or not fan else 120  # 60 views per half-turn, as the parallel default
        count = angles if isinstance(angles, int) else len(angles)
        angle_range = parse_angle_range(angle_range, fan, listed=not isinstance(angles, int))
        if projections:
            from pnp_stable.cli.projections import reconstruct_projection_stack

            options = dict(method=solver, denoiser=denoiser, max_iter=max_iter, tol=tol, accelerate=accelerate,
                           device=device, image_size=size, detector=detector, weighting=weighting,
                           **({"flat_exposures": flat_exposures} if flat_exposures is not None else {}),
                           noise_level=level[1] if level is not None else None, angle_range=angle_range,
                           detector_offset=detector_offset,
                           **({"axis_tilt": axis_tilt} if axis_tilt is not None else {}), workers=workers,
                           **manual)
            # the angles as given (a count or a file), None when they are the stack's own
            shown = {**{k: v for k, v in context.params.items() if k != "quiet"},
                     "angles": context.params["angles"] if angles_given else None}
            reconstruct_projection_stack(
                data, rows=rows, flat=None if readings is None else readings.flat,
                dark=None if readings is None else readings.dark, gain=gain, photons=photons, angles=angles,
                count_given=count if angles_given else None, options=options, checkpoint=checkpoint, resume=resume,
                out=out, report=report, shown=shown, quiet=quiet)
            return
        from pnp_stable.cli.folders import run_restorations
        from pnp_stable.cli.image_task import Demo

        # a sinogram's angles are its columns (an explicit --angles that differs is refused first)
        arguments = dict(angles=angles if simulate or not isinstance(angles, int) else None, simulate=simulate,
                         noise_level=level[1] if level is not None and level[0] == "absolute" else None,
                         relative_noise_level=level[1] if level is not None and level[0] == "relative" else None,
                         seed=seed, image_size=size, detector=detector, geometry=geometry, angle_range=angle_range,
                         photons=photons, weighting=weighting, attenuation=attenuation,
                         **({k: v for k, v in distances.items() if v is not None}), method=solver, denoiser=denoiser,
                         max_iter=max_iter, tol=tol,
                         accelerate=accelerate, device=device, checkpoint=checkpoint, resume=resume, **manual)
        from pnp_stable.cli.images import read_image, read_raw_sinogram

        reader = read_image if readings is None else read_raw_sinogram  # --flat: readings as stored
        if data is not None and not data.is_dir():  # a folder checks each file before the first solve
            _check_ct_input(data, reader(data), simulate, count if angles_given else None,
                            photons if readings is None else None)
        if angle_range is None:
            span = "360 degrees" if fan else None
        else:
            span = "a short scan" if angle_range == "short" else f"{angle_range:g} degrees"
        views = f"{count} {'fan-beam views' if fan else 'angles'}" + (f" over {span}" if span else "")
        if fan and (detector_shape == "curved" or detector_offset):
            shift = f", shifted {detector_offset:g} cell" if detector_offset else ""
            views += f" ({detector_shape or 'flat'} detector{shift})"
        elif isinstance(detector_offset, float) and detector_offset:
            views += f" (rotation axis {detector_offset:g} bins off the detector's centre)"
        demo = Demo(f"demo: Shepp-Logan phantom (256x256), {views}, reconstructed (--simulate)",
                    image=_phantom, stem="shepp_logan")
        angles_file = None if isinstance(angles, int) else Path(click.get_current_context().params["angles"])
        inputs = None
        if angles_file is not None:  # an angles .npy kept in the sinograms' folder is no sinogram
            from pnp_stable.cli.folders import ImageInputs

            shared = ImageInputs(files=(angles_file,), reported={"angles": str(angles_file)})
            inputs = lambda _path: shared  # noqa: E731
        if readings is not None:
            arguments.update(gain=gain, flat_exposures=flat_exposures)
            readings.angles_file = angles_file
            inputs = readings.inputs_for
        run_restorations("ct", data, tag="reconstructed", demo=demo, task=_Reconstruction(from_skimage and not simulate),
                         arguments=arguments, out=out, report=report, plot=plot, quiet=quiet, inputs_for=inputs,
                         check_image=lambda path, loaded, _: _check_ct_input(path, loaded, simulate,
                                                                             count if angles_given else None,
                                                                             photons),
                         # a sinogram's own count when none was given (the report's operator has the values)
                         reported={"angles": (count if angles_file is None else str(angles_file))
                                   if angles_given or simulate else None, "noise": noise, "angle_range": angle_range,
                                   "photons": photons,
                                   "weighting": weighting if photons is not None or flat is not None else None},
                         # a sinogram's bit depth says nothing of the reconstruction's: 16 bits for an image file
                         output_bit_depth=None if simulate else 16,
                         reader=None if readings is None else read_raw_sinogram)


class _RawReadings:
    """--flat/--dark of one raw sinogram: the files protected as inputs, and read unscaled into
    ``reconstruct_ct``'s ``flat`` and ``dark`` (the sinogram itself by ``read_raw_sinogram``)."""

    def __init__(self, flat: float | Path, dark: float | Path | None, flat_text: str, dark_text: str | None) -> None:
        self.flat, self.dark = flat, dark
        self.shown = {"flat": flat_text, "dark": dark_text}  # the report's options: as the command line spelt them
        self.angles_file: Path | None = None  # --angles FILE, an input too

    def inputs_for(self, image: Path | None):
        from pnp_stable.cli.folders import ImageInputs

        files = tuple(f for f in (self.flat, self.dark, self.angles_file) if isinstance(f, Path))
        return ImageInputs(files=files, read=self._read,
                           reported={**self.shown, **({"angles": str(self.angles_file)} if self.angles_file else {})},
                           options={name: f for name, f in (("flat", self.flat), ("dark", self.dark))
                                    if isinstance(f, Path)})

    def _read(self) -> dict:
        from pnp_stable.cli.images import read_counts

        return {"flat": read_option_file(self.flat, "--flat", read_counts),
                "dark": read_option_file(self.dark, "--dark", read_counts)}


def _check_projection_options(data: Path | None, simulate: bool, from_skimage: bool, fan: bool, context) -> None:
    """What --projections cannot be combined with."""
    if data is None or simulate:
        raise UserError("--projections reads a measured stack of projections (a 3-D .npy or multi-page TIFF): give "
                        "its file (a simulation projects a 2-D phantom)")
    if from_skimage:
        raise UserError("--from-skimage converts one scikit-image sinogram; not with --projections")
    if fan:
        raise UserError("a stack of fan-beam projections is a cone beam, which does not separate into slices: "
                        "--projections reads parallel-beam stacks")
    if context.params.get("plot") is not None:
        raise UserError("--plot draws one solve's residual; a volume's slices are summed up in --report")


def _check_flat_noise_options(readings: _RawReadings | None, weighting: str, flat_exposures: int | None) -> None:
    """``--weighting gls`` and ``--flat-exposures`` need a measured flat (``readings``), not a number."""
    if flat_exposures is not None:
        if readings is None:
            raise UserError("--flat-exposures counts the exposures a flat field averages: add the flat (--flat)")
        if flat_exposures < 1:
            raise UserError(f"--flat-exposures must be a positive number of exposures, got {flat_exposures}")
    if weighting == "gls" and readings is None:
        raise UserError("--weighting gls models a measured flat field's own noise: add its frames (--flat FILE)")
    if readings is not None and not isinstance(readings.flat, Path):
        for used, option in ((weighting == "gls", "--weighting gls"), (flat_exposures is not None, "--flat-exposures")):
            if used:
                raise UserError(f"{option} describes a measured flat field: --flat {readings.shown['flat']} is a "
                                "number, without noise of its own; give its frames (--flat FILE)")


def _raw_readings(data: Path | None, flat: str | None, dark: str | None, gain: float | None, simulate: bool,
                  photons: float | str | None, noise: str | None, from_skimage: bool,
                  projections: bool = False) -> _RawReadings | None:
    """``--flat``/``--dark``/``--gain`` checked against the other options (None without --flat)."""
    if flat is None:
        for name, value in (("--dark", dark), ("--gain", gain)):
            if value is not None:
                raise UserError(f"{name} describes raw detector readings: add their flat field (--flat)")
        return None
    if simulate or data is None:
        raise UserError("--flat is the flat field of a measured raw sinogram; a simulation makes its own data "
                        "(--photons draws counts)")
    if data.is_dir() and not projections:
        raise UserError("--flat describes one raw sinogram (each detector row has its own flat field): give the "
                        "sinograms one at a time")
    if photons is not None:
        raise UserError("--photons reads post-log data of I0 photons per bin; --flat reads raw data and their flat "
                        "field (each bin's I0): give one of them")
    if noise is not None:
        raise UserError("with --flat the noise follows from the photon counts: drop --noise (give --gain if you know "
                        "it)")
    if from_skimage:
        raise UserError("--from-skimage converts skimage.transform.radon's line integrals; --flat reads raw "
                        "detector readings")
    if gain is not None and not (0 < gain < float("inf")):
        raise UserError(f"--gain must be a positive number of detector units per photon, got {gain:g}")
    return _RawReadings(_file_or_value(flat, "--flat", projections),
                        None if dark is None else _file_or_value(dark, "--dark", projections),
                        flat, dark)


def _file_or_value(text: str, option: str, folders: bool = False) -> float | Path:
    """A number, or a file (or, with ``folders``, a folder of frames) that ``option`` names."""
    try:
        value = float(text)
    except ValueError:
        path = Path(text)
        if not (path.is_file() or folders and path.is_dir()):
            raise UserError(f"{option} {text}: neither a number nor a file{' or folder' if folders else ''}") from None
        return path
    if not math.isfinite(value):
        raise UserError(f"{option} must be a finite number or a file, got {text}")
    return value


def parse_photons(text: str, simulate: bool) -> float | str:
    """``--photons``: a number of incident photons per bin, or ``auto`` (a measured sinogram's, read
    off its noise)."""
    from pnp_stable.restore import MAX_PHOTONS

    value = text.strip().lower()
    if value == "auto":
        if simulate:
            raise UserError("--photons auto reads a measured sinogram's photon count off its noise; a simulation "
                            "(--simulate, the demo) draws counts of a number you give")
        return "auto"
    try:
        photons = float(value)
    except ValueError:
        raise UserError(f"--photons {text!r} is neither a number of photons per bin nor 'auto'") from None
    if not (0 < photons <= MAX_PHOTONS):
        raise UserError(f"--photons must be a positive number of photons per bin, at most {MAX_PHOTONS:g}, "
                        f"got {text}")
    return photons


def parse_axis_tilt(text: str | None) -> float | str | None:
    """``--axis-tilt``: a finite number of degrees within +-5, or ``auto``; None when not given."""
    if text is None:
        return None
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    try:
        degrees = float(value)
    except ValueError:
        raise UserError(f"--axis-tilt {text!r} is not a number of degrees or 'auto'") from None
    from pnp_stable.volume import MAX_AXIS_TILT_DEG

    if not abs(degrees) <= MAX_AXIS_TILT_DEG:
        raise UserError(f"--axis-tilt must be a number of degrees within +-{MAX_AXIS_TILT_DEG:g}, got {text}")
    return degrees


def parse_workers(text: str | None) -> int | str:
    """``--workers``: a number of processes (1 or more) or ``auto``; 1 when not given."""
    if text is None:
        return 1
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise UserError(f"--workers {text!r}: give a number of processes (1 or more) or 'auto'")
    return int(value)


def parse_detector_offset(text: str | None, fan: bool, simulated: bool, circle: bool) -> float | str | None:
    """``--detector-offset``: a finite number of cells, or ``auto`` (a measured parallel-beam sinogram's
    rotation axis, read off the data); None when not given."""
    if text is None:
        return None
    value = text.strip().lower()
    if circle:
        raise UserError("--detector-offset shifts the full detector's bins; not with --detector circle (it sees the "
                        "disc inscribed in the image, about its centre)")
    if value == "auto":
        if fan:
            raise UserError("--detector-offset auto locates a parallel beam's rotation axis; a fan beam's offset is the "
                            "scanner's: give it in cells (e.g. 0.25)")
        if simulated:
            raise UserError("--detector-offset auto reads a measured sinogram's rotation axis; a simulation sets it: "
                            "give a number of bins")
        return "auto"
    try:
        offset = float(value)
    except ValueError:
        raise UserError(f"--detector-offset {text!r} is not a number of cells or 'auto'") from None
    if not math.isfinite(offset):
        raise UserError(f"--detector-offset must be a finite number of cells, got {text}")
    return offset


def parse_angle_range(text: str | None, fan: bool, listed: bool) -> float | str | None:
    """``--angle-range``: degrees in (0, 360], or ``short`` (a fan beam's short scan); None when not given."""
    if text is None:
        return None
    if listed:
        raise UserError("--angle-range spreads a count of angles; the angles of --angles FILE have their own range")
    value = text.strip().lower()
    if value == "short":
        if not fan:
            raise UserError("--angle-range short is a fan beam's short scan: add --geometry fan (a parallel beam "
                            "measures every line over 180 degrees)")
        return "short"
    try:
        degrees = float(value)
    except ValueError:
        raise UserError(f"--angle-range {text!r}: neither a number of degrees nor 'short'") from None
    if not 0 < degrees <= 360:
        raise UserError(f"--angle-range {text}: must lie in (0, 360] degrees")
    return degrees


def parse_angles(text: str) -> int | list[float]:
    """``--angles``: a count (``"60"``) or a file of angles in degrees (``.npy``: a 1-D array; any
    other file: numbers separated by spaces, commas or line breaks)."""
    import numpy as np

    text = text.strip()
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= 10000:
            raise UserError(f"--angles {count}: give between 1 and 10000 angles")
        return count
    path = Path(text)
    if not path.is_file():
        raise UserError(f"--angles {text}: neither a count of angles nor a file of them")
    from pnp_stable.fileio import read_npy

    try:
        values = (read_npy(path) if path.suffix.lower() == ".npy"
                  else np.array(path.read_text().replace(",", " ").split(), dtype=np.float64))
    except (OSError, ValueError) as exc:
        raise UserError(f"--angles {path.name}: cannot read angles from it ({exc})") from None
    if not isinstance(values, np.ndarray) or values.ndim != 1 or values.size == 0 \
            or not np.issubdtype(values.dtype, np.number):
        raise UserError(f"--angles {path.name}: expected a 1-D list of angles in degrees")
    if not np.isfinite(values).all():
        raise UserError(f"--angles {path.name}: holds NaN or infinite values")
    return [float(v) for v in values]


def _phantom():
    """The demo's ground truth: scikit-image's Shepp-Logan phantom at 256 x 256."""
    import numpy as np
    from skimage import data as skdata
    from skimage import transform

    from pnp_stable.cli.images import LoadedImage

    phantom = transform.resize(skdata.shepp_logan_phantom(), (256, 256), anti_aliasing=True)
    return LoadedImage(np.clip(phantom, 0, 1).astype(np.float32), 8, None)


def _check_ct_input(path: Path, loaded, simulate: bool, angles: int | None, photons: float | str | None = None
                    ) -> None:
    """What ``reconstruct_ct`` would refuse, before the first slice of a folder (and for one file):
    an RGB image, a sinogram whose columns disagree with an explicit --angles, a phantom that is not
    square or not on the [0, 1] scale, integer samples (read scaled to [0, 1]) as post-log data of
    --photons."""
    if loaded.is_rgb:
        raise UserError(f"{path.name} is an RGB image; CT data must be gray")
    scaled = loaded.bit_depth is not None or any(note.startswith("integer samples scaled") for note in loaded.notes)
    if photons is not None and not simulate and scaled:
        raise UserError(f"{path.name} holds integer samples, which are read scaled to [0, 1]: --photons needs the "
                        "post-log line integrals -log(I/I0) themselves, as float data (.npy or a float TIFF)")
    height, width = loaded.data.shape
    if simulate:
        if height != width:
            raise UserError(f"{path.name} is {height}x{width}: a phantom to project (--simulate) must be square")
        from pnp_stable.cli.folders import check_range

        check_range(path, loaded)
    elif angles is not None and width != angles:
        raise UserError(f"{path.name} has {width} angles (columns; a sinogram is n_detectors x n_angles) but "
                        f"--angles is {angles}",
                        hint="a sinogram's angles are its columns: drop --angles, or transpose it")


class _Reconstruction:
    """``reconstruct_ct`` on a read image (``1 x H x W``), after moving a scikit-image sinogram to
    this tool's rotation axis when asked (--from-skimage)."""

    def __init__(self, from_skimage: bool) -> None:
        self.from_skimage = from_skimage

    def __call__(self, tensor, progress: bool, **arguments):
        import torch

        from pnp_stable.restore import reconstruct_ct

        if self.from_skimage:
            from pnp_stable.operators.ct import detector_count, sinogram_from_skimage

            size, detector = arguments.get("image_size"), arguments.get("detector", "full")
            if size is not None and detector_count(size, detector) != tensor.shape[-2]:
                other = "circle" if detector == "full" else "full"
                hint = (f": pass --detector {other}" if detector_count(size, other) == tensor.shape[-2]
                        else "; check --size")
                raise UserError(f"the sinogram has {tensor.shape[-2]} detectors but a {size}x{size} image needs "
                                f"{detector_count(size, detector)} with the {detector} detector{hint}")

            angles = arguments.get("angles")  # a list from --angles FILE: the shift depends on each angle
            if arguments.get("angle_range") is not None:  # the columns spread over the range given
                angles = [k * float(arguments["angle_range"]) / tensor.shape[-1] for k in range(tensor.shape[-1])]
            tensor = torch.from_numpy(sinogram_from_skimage(
                tensor[0].numpy(), angles_deg=angles if isinstance(angles, list) else None,
                detector=arguments.get("detector", "full")).astype("float32"))[None]
        restoration = reconstruct_ct(tensor, progress=progress, **arguments)
        if self.from_skimage:
            restoration.notes.insert(0, "sinogram moved from skimage.transform.radon's rotation axis to this tool's "
                                        "(docs/operators.md)")
        return restoration
