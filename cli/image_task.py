"""One restoration of one image, as the restoration commands (``deblur``, ``superres``, ``inpaint``,
``denoise``, ``ct``) run it: the demo image, reading the input, running the task under the solver's warnings, and
writing the outputs (:mod:`pnp_stable.cli.folders` runs it for each image of a folder)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click
import numpy as np

from pnp_stable.cli.reporting import check_outputs, finish_restoration, solver_warnings

if TYPE_CHECKING:  # torch is imported where the work starts, so that --help answers at once
    import torch

    from pnp_stable.cli.images import LoadedImage


def demo_camera() -> LoadedImage:
    """scikit-image's camera at 256x256 in [0, 1], the demo image of the restoration commands."""
    import numpy as np
    from skimage import data, transform

    from pnp_stable.cli.images import LoadedImage

    cam = transform.resize(data.camera().astype(np.float32) / 255.0, (256, 256), anti_aliasing=True)
    return LoadedImage(cam.astype(np.float32), 8, None)


def as_tensor(loaded: LoadedImage) -> torch.Tensor:
    """A read image as the ``C x H x W`` tensor the tasks take."""
    import torch

    tensor = torch.from_numpy(loaded.data)
    return tensor.permute(2, 0, 1) if loaded.is_rgb else tensor[None]


@dataclass(frozen=True)
class Demo:
    """What a command restores without an input: its description (on stderr), the image, and the
    stem of the output's name (written in the working folder)."""

    description: str
    image: Callable[[], LoadedImage] = demo_camera
    stem: str = "camera"


# commands whose RGB input with three equal channels is restored as a gray image (not inpaint: a
# colour mask may mark channels apart; not ct: sinograms are gray)
_GRAY_WHEN_EQUAL = ("deblur", "denoise", "superres")


def _equal_channels(loaded: LoadedImage) -> bool:
    data = loaded.data
    return loaded.is_rgb and np.array_equal(data[..., 0], data[..., 1]) and np.array_equal(data[..., 0], data[..., 2])


# task argument -> the option the report names it by, as the command line does
_OPTION_NAMES = {"noise_level": "noise", "method": "solver", "image_size": "size"}


def restore_image(command: str, image: Path | None, demo: Demo, task: Callable[..., Any],
                  task_arguments: dict[str, Any], out, report, plot, quiet: bool, tag: str,
                  also_inputs: tuple[Path, ...] = (), reported: dict[str, Any] | None = None,
                  resume_hint: str | None = None, allow_nonfinite: bool = False,
                  output_bit_depth: int | None = None, reader: Callable[[Path], Any] | None = None) -> str:
    """Read ``image`` (None: the ``demo``), check every destination
    against the inputs (``image`` and ``also_inputs``, e.g. a mask) before any work, run
    ``task(tensor, **task_arguments)`` and write ``<stem>_<tag>``, the report (whose options are the
    task arguments under their option names, updated by ``reported``: the values a report should
    show instead, such as a mask's file name for its array) and the plot. Returns how the solve
    stopped (``"interrupted"``: the outputs of the last recorded iterate are written, and the state
    is saved when a checkpoint was given); ``resume_hint`` replaces the "--resume continues it" line
    of a solve stopped at its iteration cap; ``allow_nonfinite`` lets NaN through to the task (which
    ignores them in an inpainting's holes and refuses them elsewhere); ``output_bit_depth``
    replaces the input's (a CT reconstruction's is not its sinogram's); ``reader`` reads ``image``
    instead of :func:`~pnp_stable.cli.images.read_image` (raw detector readings, unscaled)."""
    options = {_OPTION_NAMES.get(k, k): v for k, v in task_arguments.items()}
    options.update(reported or {})
    from pnp_stable.cli.images import default_output, read_image

    out_path = Path(out) if out else default_output(Path(f"{demo.stem}.png") if image is None else image, tag)
    targets = dict(out=out_path, report=report, plot=plot, checkpoint=task_arguments.get("checkpoint"))
    for source in (image, *also_inputs):
        check_outputs(source, out_given=bool(out), **targets)
    if image is None:
        loaded = demo.image()
        if not quiet:
            click.echo(demo.description, err=True)
    else:
        # the task checks the range
        loaded = read_image(image, allow_nonfinite) if reader is None else reader(image)
    written_as_rgb = False
    if command in _GRAY_WHEN_EQUAL and task_arguments.get("denoiser") is None and _equal_channels(loaded):
        # a black-and-white photograph saved as RGB: the gray denoiser restores it in a third of the
        # work (the colour model would see chroma planes of zeros), and the file written is RGB again
        from pnp_stable.cli.images import LoadedImage

        note = "its three colour channels are equal: restored as a gray image (the gray denoiser) and written as RGB"
        loaded = LoadedImage(np.ascontiguousarray(loaded.data[..., 0]), loaded.bit_depth, loaded.path,
                             (*loaded.notes, note), loaded.alpha)
        written_as_rgb = True
    with solver_warnings(quiet):
        restoration = task(as_tensor(loaded), progress=not quiet, **task_arguments)
    if written_as_rgb:
        restoration.image = restoration.image.expand(3, -1, -1).contiguous()
    stopped_by = "done" if restoration.result is None else restoration.result.stopped_by  # a denoising: no solve
    finish_restoration(command, restoration, loaded, image, out_path, report, plot, options, quiet,
                       output_bit_depth=output_bit_depth,
                       resume_hint=resume_hint if stopped_by == "max_iter" else None)
    return stopped_by
