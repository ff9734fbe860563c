"""``pnp-stable models``."""

from __future__ import annotations

import json

import click

from pnp_stable.cli.errors import user_errors


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the full metadata as JSON.")
def models(as_json):
    """List the shipped denoisers with their certified constants and BSD68 PSNR.

    Any other saved model is used by path: `--denoiser path/to/model.pt`.

    \b
    Examples:
      pnp-stable models
      pnp-stable models --json
    """
    with user_errors():
        from pnp_stable.denoisers import available

        entries = available()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo("no shipped models")
        return
    click.echo(f"{'name':<14} {'kind':<13} {'ch':>2}  {'sigma/255':<10} {'L':>6} {'alpha':>8}  {'BSD68 PSNR 15/25/50':<22} description")
    for m in entries:
        cert = m.get("certificate") or {}
        rng = m.get("sigma_range_255") or []
        psnr = m.get("bsd68_psnr") or {}
        ps = "/".join(f"{psnr[k]:.2f}" if k in psnr else "-" for k in ("15", "25", "50"))
        alpha = cert.get("averagedness")
        lip = cert.get("lipschitz")
        click.echo(f"{m.get('name', '?'):<14} {m.get('kind', '?'):<13} {m.get('channels', '?'):>2}  "
                   f"{'-'.join(f'{v:g}' for v in rng):<10} {lip if lip is None else f'{lip:.3g}':>6} "
                   f"{'-' if alpha is None else f'{alpha:.4f}':>8}  {ps:<22} {m.get('description', '')}")
