"""``pnp-stable deblur``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pnp_stable.cli.errors import UserError, check_level_square, sigterm_as_interrupt, user_errors
from pnp_stable.cli.options import check_kernel_spec, color_option, manual_settings, parse_level, solver_options
from pnp_stable.cli.reporting import check_outputs, finish_restoration, solver_warnings


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
    from pnp_stable.cli.images import list_images

    with user_errors(), sigterm_as_interrupt():
        level = parse_level(noise)
        check_level_square(level, "--noise")
        manual = manual_settings(sigma_den, step, strength, tile, solver, per_image_state=True)
        kernel_shape = check_kernel_spec(kernel)
        if image is None:
            inputs, simulate = [None], True
            if not quiet:
                click.echo("demo: scikit-image's camera (256x256), blurred and restored (--simulate)", err=True)
        elif image.is_dir():
            inputs = list_images(image, outputs_tag="restored")
            if out is not None:
                raise UserError("--out names one file; with a folder, outputs go beside each input")
        else:
            inputs = [image]
        if resume and checkpoint is None:
            raise UserError("--resume needs --checkpoint FILE (the state to continue)")
        folder = len(inputs) > 1
        if folder:  # every image readable and every output writable before the first solve writes anything
            _check_folder(inputs, kernel_shape, out, report, plot, checkpoint, resume)
        for n, path in enumerate(inputs):
            state = _per_file(checkpoint, path) if folder else checkpoint
            resume_this, iterations, hint = resume, max_iter, None
            if folder and checkpoint is not None:
                # in a folder, --resume keeps an image that ended (as the uninterrupted run would have
                # left it), so the "continue it" hint of a single image does not hold there
                hint = (f"a folder --resume keeps {path.name} as it is; to iterate further, resume it alone "
                        f"(pnp-stable deblur {path} --checkpoint {state} --resume, same options)")
            if resume and folder:
                # a folder resumes where it stopped: finished images are kept, unstarted ones start
                done = _finished(state)
                if done:
                    if not quiet:
                        click.echo(f"note: {path.name} already restored ({done}; state {state}); checking it "
                                   "against these options", err=True)
                    # resumed for 0 more iterations: pnp_stable.restore compares the state's problem
                    # fingerprint (input, kernel, solver, seed, ...) with this run's and refuses a
                    # change, as for one image; the outputs are written again from the saved state
                    iterations = 0
                resume_this = Path(state).is_file()
            per_image = dict(manual, checkpoint=state, resume=resume_this)
            stopped = _one(path, kernel, level, simulate, boundary, color, solver, denoiser, max_iter, tol, per_image,
                           accelerate, seed, device, out, _per_file(report, path) if folder else report,
                           _per_file(plot, path) if folder else plot, quiet, iterations=iterations, resume_hint=hint)
            if stopped == "interrupted":
                left = len(inputs) - n - 1
                click.echo("interrupted" + (f": {left} more image(s) not restored" if left else ""), err=True)
                sys.exit(130)


def _check_folder(inputs: list[Path], kernel_shape: tuple[int, int], out, report, plot, checkpoint,
                  resume: bool) -> None:
    """Refuse, before the first solve, what would otherwise fail or destroy something part way
    through a folder: a destination (restored image, --report, --plot, --checkpoint, each
    ``<stem>_<image stem><suffix>`` per image) that is one of the inputs or that two images share
    (a.png and a.tif), an existing state without --resume, an unreadable image, and an image smaller
    than the kernel."""
    from pnp_stable.cli.images import default_output, read_image
    from pnp_stable.restore import check_unit_range

    inputs_by_path = {p.resolve(): p for p in inputs}
    owners: dict[Path, tuple[str, Path]] = {}
    for path in inputs:
        targets = {"out": Path(out) if out else default_output(path, "restored"),
                   "report": _per_file(report, path), "plot": _per_file(plot, path),
                   "checkpoint": _per_file(checkpoint, path)}
        check_outputs(path, **targets)
        for option, target in targets.items():
            if target is None:
                continue
            what = "the restored image" if option == "out" else f"--{option}"
            resolved = target.resolve()
            if resolved in inputs_by_path:
                raise UserError(f"refusing to overwrite the input {inputs_by_path[resolved].name}: it is where "
                                f"{what} of {path.name} would go ({target})",
                                hint=f"choose a --{option} name that no input name starts with, or another folder")
            if resolved in owners:
                other = owners[resolved][1]
                raise UserError(f"{other.name} and {path.name} would both write {what} {target} (per-image "
                                "names are <name>_<image stem><suffix>)",
                                hint="rename one of the images, or restore them separately")
            owners[resolved] = (option, path)
        state = targets["checkpoint"]
        if state is not None and not resume and state.exists():
            raise UserError(f"checkpoint {state} exists: resume it (--resume), or choose another --checkpoint")
    kh, kw = kernel_shape
    kh, kw = kh + 1 - kh % 2, kw + 1 - kw % 2  # centred on an odd grid, as the blur operator does
    for path in inputs:
        data = read_image(path).data
        check_unit_range(data, str(path))
        height, width = data.shape[:2]
        if kh > height or kw > width:
            raise UserError(f"{path.name} ({height}x{width}) is smaller than the kernel ({kh}x{kw} after "
                            "centring); nothing was restored")


def _finished(state) -> str | None:
    """How a saved solve ended, if it ended (converged or reached --max-iter); None otherwise."""
    if state is None or not Path(state).is_file():
        return None
    from pnp_stable.solvers import load_solve_state

    stopped = load_solve_state(state)[0].stopped_by
    return stopped if stopped in ("converged", "max_iter") else None


def _per_file(target, path):
    if target is None:
        return None
    t = Path(target)
    return t.with_name(f"{t.stem}_{path.stem}{t.suffix}")


def _one(path, kernel, level, simulate, boundary, color, solver, denoiser, max_iter, tol, manual, accelerate, seed,
         device, out, report, plot, quiet, iterations=None, resume_hint=None):
    from pnp_stable.cli.image_task import as_tensor, demo_camera
    from pnp_stable.cli.images import default_output, read_image

    if path is None:
        loaded = demo_camera()
    out_path = Path(out) if out else default_output(path, "restored")
    check_outputs(path, out=out_path, report=report, plot=plot, checkpoint=manual.get("checkpoint"))
    if path is not None:
        loaded = read_image(path)  # pnp_stable.restore.deblur checks its range
    from pnp_stable.restore import deblur as run

    with solver_warnings(quiet):
        restoration = run(as_tensor(loaded), kernel, noise_level=level, simulate=simulate, seed=seed, boundary=boundary,
                          method=solver, denoiser=denoiser, max_iter=max_iter if iterations is None else iterations,
                          tol=tol, accelerate=accelerate,
                          device=device, progress=not quiet, color=color, **manual)
    options = dict(kernel=kernel, noise=level, simulate=simulate, seed=seed, boundary=boundary, solver=solver,
                   denoiser=denoiser, max_iter=max_iter, tol=tol, accelerate=accelerate, device=device, color=color,
                   **manual)
    hint = resume_hint if restoration.result.stopped_by == "max_iter" else None
    finish_restoration("deblur", restoration, loaded, path, out_path, report, plot, options, quiet,
                       resume_hint=hint)
    return restoration.result.stopped_by

