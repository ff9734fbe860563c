"""Entry point of the ``pnp-stable`` command.

Sub-commands are imported on first use (click's lazy-group pattern), and every heavy import
(torch, deepinv) happens inside the command bodies, so ``pnp-stable --help`` answers at once.
"""

from __future__ import annotations

import importlib

import click

from pnp_stable import __version__

# command name -> (module, attribute)
_COMMANDS: dict[str, tuple[str, str]] = {
    "deblur": ("pnp_stable.cli.cmd_deblur", "deblur"),
    "superres": ("pnp_stable.cli.cmd_superres", "superres"),
    "inpaint": ("pnp_stable.cli.cmd_inpaint", "inpaint"),
    "ct": ("pnp_stable.cli.cmd_ct", "ct"),
    "denoise": ("pnp_stable.cli.cmd_denoise", "denoise"),
    "certify": ("pnp_stable.cli.cmd_certify", "certify"),
    "models": ("pnp_stable.cli.cmd_models", "models"),
    "train-denoiser": ("pnp_stable.cli.cmd_train", "train_denoiser"),
    "train-classifier": ("pnp_stable.cli.cmd_train_classifier", "train_classifier"),
}


class LazyGroup(click.Group):
    """Imports sub-commands on demand; reports every user error as one line with exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        from pnp_stable.cli.errors import one_line_warnings

        if not standalone_mode:
            with one_line_warnings():
                return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        import sys

        try:
            with one_line_warnings():
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:  # bad option value, missing argument, unknown command
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="pnp-stable")
def main() -> None:
    """Plug-and-Play image restoration with certified, provably convergent denoisers.

    \b
    Examples:
      pnp-stable deblur                        # demo: blur + restore scikit-image's camera
      pnp-stable deblur photo.png --kernel gauss:1.6 --noise 2.55/255
      pnp-stable superres small.png --factor 2 # 2x the rows and columns
      pnp-stable inpaint photo.png --missing mask.png
      pnp-stable ct                            # demo: sparse-view CT of a Shepp-Logan phantom
      pnp-stable certify                       # constants of the default denoiser
      pnp-stable models                        # shipped and user denoisers
    """
