"""What the single-image restoration commands (``superres``, ``inpaint``) share: the demo image,
reading the input, running the task under the solver's warnings, and writing the outputs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from pnp_stable.cli.errors import UserError
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


# task argument -> the option the report names it by, as the command line does
_OPTION_NAMES = {"noise_level": "noise", "method": "solver"}


def run_image_command(command: str, image: Path | None, demo: str, task: Callable[..., Any],
                      task_arguments: dict[str, Any], out, report, plot, quiet: bool, tag: str,
                      also_inputs: tuple[Path, ...] = (), reported: dict[str, Any] | None = None) -> None:
    """Read ``image`` (None: the demo, described by ``demo`` on stderr), check every destination
    against the inputs (``image`` and ``also_inputs``, e.g. a mask) before any work, run
    ``task(tensor, **task_arguments)`` and write ``<stem>_<tag>``, the report (whose options are the
    task arguments under their option names, with ``reported`` in place of the values a report
    should not hold, such as a mask array) and the plot; exit 130 after an interruption (the state
    is saved when ``--checkpoint`` was given)."""
    options = {_OPTION_NAMES.get(k, k): v for k, v in task_arguments.items()}
    options.update(reported or {})
    from pnp_stable.cli.images import default_output, read_image

    if image is not None and image.is_dir():
        raise UserError(f"{image} is a folder; {command} restores one image at a time")
    out_path = Path(out) if out else default_output(image, tag)
    targets = dict(out=out_path, report=report, plot=plot, checkpoint=task_arguments.get("checkpoint"))
    for source in (image, *also_inputs):
        check_outputs(source, **targets)
    if image is None:
        loaded = demo_camera()
        if not quiet:
            click.echo(demo, err=True)
    else:
        loaded = read_image(image)  # the task checks the range
    with solver_warnings(quiet):
        restoration = task(as_tensor(loaded), progress=not quiet, **task_arguments)
    finish_restoration(command, restoration, loaded, image, out_path, report, plot, options, quiet)
    if restoration.result.stopped_by == "interrupted":
        click.echo("interrupted", err=True)
        sys.exit(130)
