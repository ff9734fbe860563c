"""``pnp-stable certify``."""

from __future__ import annotations

import json

import click

from pnp_stable.cli.errors import UserError, user_errors

# what the float32 adversarial search may exceed a proven constant by through rounding alone
SEARCH_TOLERANCE = 1e-4


@click.command()
@click.argument("denoiser", required=False, default="gray", metavar="[NAME|PATH]")
# capped at 512: the search backpropagates through every block at N x N (--size 4096 was OOM-killed
# in review); its lower bound does not need large images, the certificate holds for all sizes
@click.option("--size", type=click.IntRange(8, 512), default=32, show_default=True,
              help="Image size (N x N, at most 512) for the empirical adversarial search (the certificate holds "
                   "for all sizes).")
@click.option("--sigma", default="25/255", show_default=True, metavar="SIGMA",
              help="Noise level at which the search evaluates D (0.1, 25/255, 10%).")
@click.option("--restarts", type=click.IntRange(1, 100), default=2, show_default=True)
@click.option("--steps", type=click.IntRange(1, 10000), default=30, show_default=True)
@click.option("--no-search", is_flag=True, help="Only print the certificate (skip the adversarial search).")
@click.option("--rgb", is_flag=True,
              help="Certify and search the RGB denoiser that deblur/denoise build from a gray model "
                   "(opponent colour space, --color opponent).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def certify(denoiser, size, sigma, restarts, steps, no_search, rgb, as_json):
    """Print the certified constants of a denoiser, and an empirical lower bound from an adversarial search.

    The certified Lipschitz bound and averagedness alpha come from certified spectral-norm bounds
    (valid for every image size); the search gives lower bounds that must never exceed them.

    \b
    Examples:
      pnp-stable certify
      pnp-stable certify my_model.pt --size 64 --json
      pnp-stable certify gray --rgb
    """
    from pnp_stable.cli.options import parse_level

    with user_errors():
        level = parse_level(sigma, "sigma")
        import torch

        from pnp_stable.restore import load_denoiser

        module, info = load_denoiser(denoiser, torch.device("cpu"))
        if rgb:
            from pnp_stable.denoisers import OpponentColorDenoiser
            from pnp_stable.protocols import denoiser_channels

            if denoiser_channels(module) == 3:
                raise UserError(f"{denoiser} is already a colour (RGB) model: certify it without --rgb")
            module = OpponentColorDenoiser(module)
            module, info = load_denoiser(module, torch.device("cpu"))
            info["name"] = f"{denoiser} (RGB, opponent colour space)"
        report = {"denoiser": info["name"], "certified": info["certified"]}
        cert = info.get("certificate")
        if cert:
            # only the gradient-flow blocks (the entries with sub-steps): lift, projection,
            # relaxation and colour-transform entries would be rows of Nones
            report.update(lipschitz=cert["lipschitz"], averagedness=cert["averagedness"], blocks=[
                {k: b.get(k) for k in ("norm_certified", "norm_estimate", "nu", "time", "integrated_time", "substeps",
                                        "h_nu", "integrator", "averagedness")}
                for b in cert["blocks"] if b.get("substeps") is not None])
        if not no_search:
            from pnp_stable.protocols import denoiser_channels
            from pnp_stable.verification import empirical_averagedness_violation, empirical_lipschitz

            channels = 3 if rgb else denoiser_channels(module) or 1
            shape = (channels, size, size)

            from tqdm.auto import tqdm

            # the search's length depends on its restarts and the local Jacobian iterations, so the
            # bar counts evaluations without a total: at --size 512 the search runs for most of an
            # hour on two CPU cores, and a silent command that long looks hung
            bar = tqdm(desc=f"adversarial search {size}x{size}", unit=" evaluations", leave=False)

            def T(x):
                bar.update(1)
                return module(x, level)

            search = dict(restarts=restarts, steps=steps, n_pairs=8, dtype=torch.float32)
            with bar:
                report["empirical"] = {"image_size": size, "sigma": level,
                                       "lipschitz_lower_bound": empirical_lipschitz(T, shape, **search)}
                if cert and cert["averagedness"] is not None and cert["averagedness"] > 0:  # 0: the identity
                    report["empirical"]["averagedness_violation"] = empirical_averagedness_violation(
                        T, cert["averagedness"], shape, **search)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"denoiser {report['denoiser']}")
    if not report["certified"]:
        click.echo("  no certificate: this denoiser carries no proven constants")
    else:
        from pnp_stable.layers import format_upper_bound

        # rounded up, never to nearest: 1.0000004 printed as "1" would claim non-expansiveness, and an
        # averagedness of 0.9999996 as "1" a weaker, different statement
        a = report["averagedness"]
        click.echo(f"  certified Lipschitz bound  {format_upper_bound(report['lipschitz'], 6)}")
        click.echo(f"  certified averagedness     {format_upper_bound(a, 6)}" if a is not None
                   else "  averagedness               not proven")
        click.echo("  valid for every image size and every noise level (eval mode)")
        click.echo("  block  ||A|| (certified)  ||A|| (power est.)  sub-steps  h*nu    time     integrator")
        for i, b in enumerate(report["blocks"]):
            est = b["norm_estimate"] if b.get("norm_estimate") else float("nan")
            click.echo(f"  {i:5d}  {b['norm_certified']:17.6g}  {est:18.6g}  {b['substeps']:9d}  {b['h_nu']:.4f}  "
                       f"{b['integrated_time']:.5f}  {b['integrator']}")
    if "empirical" in report:
        e = report["empirical"]
        found = e["lipschitz_lower_bound"]
        verdict = ""
        if report.get("lipschitz") is not None:
            # the search runs in float32: ratios of nearby outputs carry ~1e-5 of rounding
            holds = found <= report["lipschitz"] * (1 + SEARCH_TOLERANCE)
            verdict = " (within the certified bound)" if holds else " (ABOVE the certified bound: VIOLATED)"
        click.echo(f"  adversarial search ({e['image_size']}x{e['image_size']}): Lipschitz >= {found:.6g}{verdict}")
        if "averagedness_violation" in e:
            v = e["averagedness_violation"]
            click.echo(f"  worst averagedness-inequality gap found: {v:.3g} "
                       f"({'holds' if v <= SEARCH_TOLERANCE else 'VIOLATED'})")
