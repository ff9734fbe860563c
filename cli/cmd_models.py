"""``pnp-stable models``."""

from __future__ import annotations

import json

import click

from pnp_stable.cli.errors import user_errors


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the full metadata as JSON.")
def models(as_json):
    """List the shipped and your own denoisers with their certified constants and BSD68 PSNR
    (CBSD68, marked C, for colour models).

    Your models live in $PNP_STABLE_MODELS (default ~/.local/share/pnp-stable/models), where
    `train-denoiser --export NAME` puts them; both kinds are used by name (`--denoiser NAME`),
    any other saved model by path (`--denoiser path/to/model.pt`).

    \b
    Examples:
      pnp-stable models
      pnp-stable models --json
    """
    with user_errors():
        from pnp_stable.denoisers import available, user_models_dir
        from pnp_stable.layers import format_upper_bound

        entries = available()
        user_dir = user_models_dir()
    if as_json:
        # JSON has no NaN or Infinity: a user model's metadata may hold them (printed as null)
        from pnp_stable.fileio import json_safe

        click.echo(json.dumps(json_safe(entries), indent=2, default=str))
        return
    if not entries:
        click.echo(f"no models (shipped or in {user_dir})")
        return
    click.echo(f"{'name':<14} {'source':<8} {'kind':<13} {'ch':>2}  {'sigma/255':<10} {'L':>6} {'alpha':>8}  "
               f"{'BSD68 PSNR 15/25/50':<22} description")
    for m in entries:
        if "error" in m:
            click.echo(f"{m['name']:<14} {m['source']:<8} {m['error']} ({m['path']})")
            continue
        try:
            line = _model_line(m, format_upper_bound)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            # a user model's metadata file with a wrong-typed field ("certificate": "x", a text
            # PSNR ...): one line for that model instead of a traceback that hides all the others
            line = (f"{str(m.get('name', '?')):<14} {str(m.get('source', '?')):<8} error: unreadable metadata "
                    f"({type(exc).__name__}: {' '.join(str(exc).split())}) ({m.get('path', '?')})")
        click.echo(line)
    click.echo(f"your models folder: {user_dir}")
    # the listing reads each model's metadata file; loading recomputes the constants from the weights
    click.echo("L and alpha as recorded at export; `pnp-stable certify NAME` recomputes them from the weights")


def _model_line(m: dict, format_upper_bound) -> str:
    cert = m.get("certificate") or {}
    rng = m.get("sigma_range_255") or []
    # a colour model is measured on CBSD68 (the colour versions of the same scenes): marked C
    colour = m.get("channels") == 3
    psnr = (m.get("cbsd68_psnr") if colour else m.get("bsd68_psnr")) or {}
    ps = ("C " if colour and psnr else "") + "/".join(f"{psnr[k]:.2f}" if k in psnr else "-" for k in ("15", "25", "50"))
    alpha = cert.get("averagedness")
    lip = cert.get("lipschitz")
    note = " (shadowed by the shipped model of that name)" if m.get("shadowed") else ""
    return (f"{m.get('name', '?'):<14} {m.get('source', '?'):<8} {m.get('kind', '?'):<13} {m.get('channels', '?'):>2}  "
            f"{'-'.join(f'{v:g}' for v in rng):<10} {'-' if lip is None else format_upper_bound(lip, 3):>6} "
            f"{'-' if alpha is None else format_upper_bound(alpha, 4):>8}  {ps:<22} {m.get('description', '')}{note}")
