"""One image or every image of a folder, as the restoration commands (``deblur``, ``superres``,
``inpaint``, ``denoise``, ``ct``) take them.

A folder is checked whole before the first solve writes anything: every image readable and in
range (and whatever else the command checks per image: a kernel that fits, a mask of the right
size), every destination writable, none of them an input and none shared by two images.
``--checkpoint``, ``--report`` and ``--plot`` name one file per image (``FILE``'s stem + the
image's). A file of the folder that is an input of the others (a mask shared by every image) is
not restored. A stop (Ctrl-C, SIGTERM) ends the whole folder with exit code 130; ``--resume`` then
keeps the images that had finished (converged or at ``--max-iter``, as the uninterrupted run leaves
them; their states are still checked against the options), continues the stopped one and starts
the others.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

import click

from pnp_stable.cli.errors import UserError
from pnp_stable.cli.image_task import Demo, as_tensor, restore_image
from pnp_stable.cli.reporting import check_outputs

if TYPE_CHECKING:
    from pnp_stable.cli.images import LoadedImage

PathLike = Union[str, Path]


def _no_arguments() -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ImageInputs:
    """What a task takes besides the image, per image: the files it comes from (protected like the
    image), how the report names them, and ``read()``, which reads them into task arguments (an
    inpainting mask) when they are needed: a folder never holds every image's at once."""

    files: tuple[Path, ...] = ()
    reported: dict[str, Any] = field(default_factory=dict)
    read: Callable[[], dict[str, Any]] = _no_arguments
    options: dict[str, Path] = field(default_factory=dict)  # option -> the file it reads, for notes


NO_INPUTS = ImageInputs()


def _options_naming(path: Path, inputs: ImageInputs) -> str:
    """`` (--missing)``: the options whose reported value, or file read, is ``path`` (empty if none is)."""
    named = {**{key: value for key, value in inputs.reported.items() if isinstance(value, (str, Path))},
             **inputs.options}
    names = [f"--{key.replace('_', '-')}" for key, value in named.items() if Path(value).resolve() == path.resolve()]
    return f" ({', '.join(dict.fromkeys(names))})" if names else ""


def _files_read_by(arguments: dict[str, Any]) -> dict[str, Path]:
    """The files a task's shared arguments read: a ``--kernel`` file and a ``--denoiser`` file. They
    are inputs like the image: no output may replace them, and in a folder they are not restored."""
    from pnp_stable.operators.kernels import kernel_spec_file

    files = {}
    kernel = arguments.get("kernel")
    kernel_file = kernel_spec_file(kernel) if isinstance(kernel, str) else None
    if kernel_file is not None:
        files["kernel"] = kernel_file
    denoiser = arguments.get("denoiser")
    if isinstance(denoiser, (str, Path)) and Path(denoiser).expanduser().is_file():
        files["denoiser"] = Path(denoiser).expanduser()
    return files


def _with_shared_files(inputs_for: Callable[[Path | None], ImageInputs],
                       shared: dict[str, Path]) -> Callable[[Path | None], ImageInputs]:
    if not shared:
        return inputs_for

    def inputs_with_shared(path: Path | None) -> ImageInputs:
        own = inputs_for(path)
        return ImageInputs(files=(*own.files, *shared.values()), reported=own.reported, read=own.read,
                           options={**shared, **own.options})

    return inputs_with_shared


def per_image_name(target: PathLike | None, image: Path) -> Path | None:
    """``FILE``'s per-image name in a folder run: ``<FILE stem>_<image stem><FILE suffix>``."""
    if target is None:
        return None
    t = Path(target)
    return t.with_name(f"{t.stem}_{image.stem}{t.suffix}")


def run_restorations(command: str, image: Path | None, *, tag: str, demo: str | Demo, task: Callable[..., Any],
                     arguments: dict[str, Any], out: PathLike | None, report: PathLike | None,
                     plot: PathLike | None, quiet: bool,
                     inputs_for: Callable[[Path | None], ImageInputs] | None = None,
                     check_image: Callable[[Path, LoadedImage, ImageInputs], None] | None = None,
                     allow_nonfinite: bool = False, output_bit_depth: int | None = None,
                     reported: dict[str, Any] | None = None, reader: Callable[[Path], LoadedImage] | None = None
                     ) -> None:
    """Run ``task`` (a :mod:`pnp_stable.restore` task) on ``image``: one file, every image of a
    folder (its earlier outputs ``X_<tag>.*`` left out), or the demo when None (described by
    ``demo``: a description of scikit-image's camera, or a :class:`Demo`). ``arguments`` are the
    task's, shared by every image; an iterative task's hold
    ``checkpoint`` and ``resume`` (a folder's states are named per image). ``inputs_for(path)``
    names an image's own inputs (see :class:`ImageInputs`); ``check_image(path, loaded, inputs)``
    refuses, before the first solve of a folder, an image the task would refuse (the range is
    checked by default: a check that replaces it must check it too; with ``allow_nonfinite`` the
    images are read with their NaN, which it must judge). Exits 130 after a stop (a solve
    interrupted, or Ctrl-C between solves), naming the images left. ``output_bit_depth``
    replaces the inputs' in the written images; ``reported`` the values the reports' options show
    instead of the task arguments' (the command line's spelling); ``reader`` reads an image instead
    of :func:`~pnp_stable.cli.images.read_image` (raw detector readings, unscaled)."""
    from pnp_stable.cli.images import list_images, unread_images

    demo = demo if isinstance(demo, Demo) else Demo(demo)
    inputs_for = _with_shared_files(inputs_for or _no_inputs, _files_read_by(arguments))
    folder = image is not None and image.is_dir()
    if folder:
        if out is not None:
            raise UserError("--out names one file; with a folder, outputs go beside each input")
        paths: list[Path | None] = []
        for path in list_images(image, outputs_tag=tag):
            inputs = inputs_for(path)
            if path.resolve() in {f.resolve() for f in inputs.files}:
                if not quiet:  # e.g. --missing frames/dead.png for the images of frames/
                    click.echo(f"note: {path.name} is an input of the others{_options_naming(path, inputs)}, "
                               "not an image to restore", err=True)
                continue
            paths.append(path)
        unread = unread_images(image)
        if not paths:
            raise UserError(f"no images to restore in {image}" + (f"; it holds {unread}" if unread else ""))
        if unread and not quiet:
            click.echo(f"note: skipped {unread}", err=True)
    else:
        paths = [image]
    checkpoint, resume = arguments.get("checkpoint"), bool(arguments.get("resume"))
    if resume and checkpoint is None:
        raise UserError("--resume needs --checkpoint FILE (the state to continue)")
    if folder:  # every image readable and every output writable before the first solve writes anything
        _check_folder(command, paths, inputs_for, check_image or check_range, tag, report, plot, checkpoint, resume,
                      allow_nonfinite, arguments, reader)
    for n, path in enumerate(paths):
        state = per_image_name(checkpoint, path) if folder else checkpoint
        resume_this, these_arguments, shown, hint = resume, dict(arguments), dict(reported or {}), None
        if folder and checkpoint is not None:
            # in a folder, --resume keeps an image that ended (as the uninterrupted run would have
            # left it), so the "continue it" hint of a single image does not hold there
            hint = (f"a folder --resume keeps {path.name} as it is; to iterate further, resume it alone "
                    f"(pnp-stable {command} {path} --checkpoint {state} --resume, same options, a larger --max-iter)")
        if resume and folder:
            done = _finished(state)
            if done:
                if not quiet:
                    click.echo(f"note: {path.name} already restored ({done}; state {state}); checking it "
                               "against these options", err=True)
                # resumed for 0 more iterations: pnp_stable.restore compares the state's problem
                # fingerprint (input, operator, solver, seed, ...) with this run's and refuses a
                # change, as for one image; the outputs are written again from the saved state
                these_arguments["max_iter"], shown["max_iter"] = 0, arguments.get("max_iter")
            resume_this = Path(state).is_file()
        if "checkpoint" in arguments:
            these_arguments.update(checkpoint=state, resume=resume_this)
        extra = inputs_for(path)
        these_arguments.update(extra.read())
        try:
            stopped = restore_image(command, path, demo, task, these_arguments, out,
                                    per_image_name(report, path) if folder else report,
                                    per_image_name(plot, path) if folder else plot, quiet, tag,
                                    also_inputs=extra.files, reported={**shown, **extra.reported},
                                    resume_hint=hint, allow_nonfinite=allow_nonfinite,
                                    output_bit_depth=output_bit_depth, reader=reader)
        except KeyboardInterrupt:  # outside a solve, which stops cleanly: this image counts as not restored
            stopped, unfinished = "interrupted", 1
        else:
            unfinished = 0
        if stopped == "interrupted":
            left = len(paths) - n - 1 + unfinished
            click.echo("interrupted" + (f": {left} more image(s) not restored" if left and folder else ""),
                       err=True)
            sys.exit(130)


def _no_inputs(path: Path | None) -> ImageInputs:
    return NO_INPUTS


def check_range(path: Path, loaded: LoadedImage, inputs: ImageInputs = NO_INPUTS) -> None:
    """The default per-image check of a folder: the image on the [0, 1] scale."""
    from pnp_stable.restore import check_unit_range

    check_unit_range(as_tensor(loaded), str(path))


def check_kernel_fits(path: Path, loaded: LoadedImage, kernel_shape: tuple[int, int], scale: int = 1) -> None:
    """A folder's image in range and, once ``scale`` times larger (the grid a super-resolution
    restores), at least as large as the kernel (centred on an odd grid, as the blur operators do)."""
    check_range(path, loaded)
    kh, kw = kernel_shape
    kh, kw = kh + 1 - kh % 2, kw + 1 - kw % 2
    height, width = (scale * n for n in loaded.data.shape[:2])
    if kh > height or kw > width:
        grid = "" if scale == 1 else f" restored by {scale}"
        raise UserError(f"{path.name} ({height}x{width}{grid}) is smaller than the kernel ({kh}x{kw} after "
                        "centring); nothing was restored")


def _check_folder(command: str, paths: list[Path], inputs_for: Callable[[Path], ImageInputs],
                  check_image: Callable[[Path, LoadedImage, ImageInputs], None], tag: str,
                  report: PathLike | None, plot: PathLike | None, checkpoint: PathLike | None, resume: bool,
                  allow_nonfinite: bool, arguments: dict[str, Any],
                  reader: Callable[[Path], LoadedImage] | None = None) -> None:
    """Refuse, before the first solve, what would otherwise fail or destroy something part way
    through a folder: a destination (the restored image, --report, --plot, --checkpoint) that is an
    input (an image, or a file beside it such as a mask) or that two images share (a.png and a.tif),
    an existing state without --resume, --resume without any state (a mistyped name would restart
    every image), an unreadable image, an image the denoiser cannot take (a colour model and a gray
    image), and one ``check_image`` refuses."""
    from pnp_stable.cli.images import default_output, read_image

    inputs = [(path, inputs_for(path)) for path in paths]
    protected = {p.resolve(): p for path, extra in inputs for p in (path, *extra.files)}
    owners: dict[Path, Path] = {}
    for path, extra in inputs:
        targets = {"out": default_output(path, tag), "report": per_image_name(report, path),
                   "plot": per_image_name(plot, path), "checkpoint": per_image_name(checkpoint, path)}
        for source in (path, *extra.files):
            check_outputs(source, out_given=False, **targets)
        for option, target in targets.items():
            if target is None:
                continue
            what = "the restored image" if option == "out" else f"--{option}"
            resolved = target.resolve()
            if resolved in protected:
                raise UserError(f"refusing to overwrite the input {protected[resolved].name}: it is where "
                                f"{what} of {path.name} would go ({target})",
                                hint=f"choose a --{option} name that no input name starts with, or another folder")
            if resolved in owners:
                raise UserError(f"{owners[resolved].name} and {path.name} would both write {what} {target} "
                                "(per-image names are <name>_<image stem><suffix>)",
                                hint=f"rename one of the images, or run pnp-stable {command} on them separately")
            owners[resolved] = path
        state = targets["checkpoint"]
        if state is not None and not resume and state.exists():
            raise UserError(f"checkpoint {state} exists: resume it (--resume), or choose another --checkpoint")
    if resume and checkpoint is not None and not any(per_image_name(checkpoint, path).exists() for path in paths):
        raise UserError(f"no checkpoint to resume: none of the folder's states ({per_image_name(checkpoint, paths[0])}"
                        f"{', ...' if len(paths) > 1 else ''}) exists")
    fits: dict[int, str | None] = {}  # channels -> why the denoiser cannot take them (None: it can)
    for path, extra in inputs:
        loaded = read_image(path, allow_nonfinite) if reader is None else reader(path)
        check_image(path, loaded, extra)
        channels = 3 if loaded.is_rgb else 1
        if channels not in fits:
            fits[channels] = _denoiser_refusal(arguments, channels)
        if fits[channels] is not None:
            raise UserError(f"{path.name}: {fits[channels]}")


def _denoiser_refusal(arguments: dict[str, Any], channels: int) -> str | None:
    """Why the task's denoiser (``arguments["denoiser"]`` in ``arguments["color"]`` mode) cannot
    restore images of ``channels`` channels, or None: loaded once per channel count on the CPU."""
    import torch

    from pnp_stable.restore import check_denoiser_channels, load_denoiser

    try:
        module, _ = load_denoiser(arguments.get("denoiser"), torch.device("cpu"), channels,
                                  arguments.get("color", "opponent"))
        check_denoiser_channels(module, channels)
    except ValueError as error:
        return str(error)
    return None


def _finished(state) -> str | None:
    """How a saved solve ended, if it ended (converged or reached --max-iter); None otherwise."""
    if state is None or not Path(state).is_file():
        return None
    from pnp_stable.solvers import load_solve_state

    stopped = load_solve_state(state)[0].stopped_by
    return stopped if stopped in ("converged", "max_iter") else None
