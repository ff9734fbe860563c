"""Exploration: a denoiser that is the *resolvent* (an implicit Euler step) of one convex ridge
potential, instead of explicit gradient-flow steps: CRR-NN's construction (Goujon et al., 2023).

    python bench/explore_resolvent_denoiser.py [--data ../shared/data] [--steps 3000] [--sigma 25]
        [--channels 32] [--mid 8] [--lam 5] [--lr 1e-3] [--threads 1] [--json out.json]

``R(z) = argmin_x 1/2 ||x - z||^2 + lam sum_k psi_k(W x)``, with ``W`` a composition of two 5x5
convolutions (1 -> ``mid`` -> ``channels``) and ``psi_k' = s_k`` a learned monotone spline with
slopes in [0, 1] (:class:`pnp_stable.layers.MonotoneLinearSpline`, initialised as a clipped ramp:
Huber potentials). ``R`` is the resolvent of the gradient of a convex function, hence **firmly
non-expansive for every** ``W`` **and** ``lam >= 0`` (no step-size condition, unlike an explicit
block's ``h nu <= 2``): why it might denoise more strongly per parameter. It is computed by
Nesterov's accelerated gradient for the 1-strongly convex objective (to a gradient norm of
``tol`` times ``||z||``, which bounds the distance to the exact resolvent, strong convexity modulus
1), and differentiated implicitly: the gradient of a loss through ``x* = z - F(x*)`` is
``(I + J_F)^{-1}`` applied to the incoming gradient (conjugate gradients, ``J_F`` symmetric
positive semi-definite), then ``-dF/dtheta`` of that.

Trained at one noise level on random 40 x 40 patches of the BSDS500 train+test images (flips,
transposes), Adam with a one-cycle schedule; validated on the first 8 BSD68 images' centre
128 x 128 crops (noise seeded 0), where the shipped ``gray`` is measured too. A measurement of a
lever, not a model to ship (docs/training-log.md, "A resolvent ridge denoiser").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deblur_common import DEFAULT_DATA  # noqa: E402
from records import run_record  # noqa: E402


class RidgeResolvent(nn.Module):
    """``z -> argmin_x 1/2 ||x - z||^2 + lam sum psi(W x)`` (see the module docstring)."""

    def __init__(self, channels: int = 32, mid: int = 8, lam: float = 5.0, clip: float = 0.05,
                 knots: tuple[int, float] = (20, 0.01)) -> None:
        from pnp_stable.layers import MonotoneLinearSpline
        from pnp_stable.layers.splines import uniform_knots

        super().__init__()
        self.w1 = nn.Parameter(torch.randn(mid, 1, 5, 5) / 25)
        self.w2 = nn.Parameter(torch.randn(channels, mid, 5, 5) / (5 * math.sqrt(mid * 25)))
        self.activation = MonotoneLinearSpline(channels, uniform_knots(*knots), init="identity")
        with torch.no_grad():  # slope 1 on [-clip, clip], 0 outside: a Huber potential
            k = self.activation.knots.double()
            half = 0.5 * float(k[1] - k[0])
            centres = torch.cat([k[:1] - half, 0.5 * (k[1:] + k[:-1]), k[-1:] + half])
            self.activation.raw_slopes.copy_((centres.abs() < clip).to(self.activation.raw_slopes).repeat(channels, 1))
        self.log_lam = nn.Parameter(torch.tensor(math.log(lam)))
        self._power: torch.Tensor | None = None
        self.last_iterations = 0

    def W(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, self.w1, padding=2), self.w2, padding=2)

    def W_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(F.conv_transpose2d(y, self.w2, padding=2), self.w1, padding=2)

    def potential_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_lam.exp() * self.W_adjoint(self.activation(self.W(x)))

    @torch.no_grad()
    def smoothness(self) -> float:
        """An estimate of ``1 + lam ||W||^2`` (30 warm-started power steps, 5 % margin): the
        accelerated gradient's step; an underestimate slows it, the stopping test stays exact."""
        u = self._power if self._power is not None else torch.randn(1, 1, 64, 64, dtype=self.w1.dtype)
        norm = torch.ones(())
        for _ in range(30):
            v = self.W_adjoint(self.W(u))
            norm = v.norm()
            u = v / norm
        self._power = u
        return 1.0 + float(self.log_lam.exp()) * float(norm) * 1.05

    def solve(self, z: torch.Tensor, tol: float, max_iter: int = 500) -> torch.Tensor:
        """The resolvent to ``||grad|| <= tol ||z||`` (per image), by Nesterov's method for a
        1-strongly convex, ``L``-smooth objective."""
        with torch.no_grad():
            smooth = self.smoothness()
            momentum = (math.sqrt(smooth) - 1) / (math.sqrt(smooth) + 1)
            x = z.clone()
            y = x
            scale = float(z.flatten(1).norm(dim=1).max())
            for iteration in range(1, max_iter + 1):
                previous, x = x, y - (y - z + self.potential_gradient(y)) / smooth
                y = x + momentum * (x - previous)
                if iteration % 10 == 0:
                    gradient = x - z + self.potential_gradient(x)
                    if float(gradient.flatten(1).norm(dim=1).max()) <= tol * scale:
                        break
        self.last_iterations = iteration
        return x

    def forward(self, z: torch.Tensor, tol: float = 1e-5) -> torch.Tensor:
        x = self.solve(z, tol)
        if not torch.is_grad_enabled():
            return x
        x = x.detach().requires_grad_(True)
        Fx = self.potential_gradient(x)

        def implicit(grad: torch.Tensor) -> torch.Tensor:
            # (I + J) v = grad by conjugate gradients; J = dF/dx at x*, symmetric positive semi-definite
            v, r = torch.zeros_like(grad), grad.clone()
            p, rr = r.clone(), (r * r).sum()
            start = rr
            for _ in range(200):
                Ap = p + torch.autograd.grad(Fx, x, p, retain_graph=True)[0]
                a = rr / (p * Ap).sum()
                v, r = v + a * p, r - a * Ap
                rr_new = (r * r).sum()
                if rr_new <= 1e-10 * start:
                    break
                p, rr = r + (rr_new / rr) * p, rr_new
            return v

        out = x.detach() + (z - z.detach()) - (Fx - Fx.detach())
        out.register_hook(implicit)
        return out


def _gray(path: Path) -> torch.Tensor:
    from PIL import Image

    return torch.from_numpy(np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=40)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--mid", type=int, default=8)
    parser.add_argument("--lam", type=float, default=5.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--sigma", type=float, default=25.0, help="noise level /255")
    parser.add_argument("--tol", type=float, default=1e-4, help="the resolvent's tolerance in training")
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    root = Path(args.data) / "denoising"
    images = [_gray(p) for split in ("train", "test") for p in sorted((root / "bsds500" / "images" / split).glob("*.jpg"))]
    crops = []
    for p in sorted((root / "bsd68").iterdir())[:8]:
        x = _gray(p)
        h, w = x.shape
        crops.append(x[h // 2 - 64: h // 2 + 64, w // 2 - 64: w // 2 + 64][None, None])
    clean_val = torch.cat(crops)
    sigma = args.sigma / 255
    noisy_val = clean_val + sigma * torch.randn(clean_val.shape, generator=torch.Generator().manual_seed(0))

    def psnr(x: torch.Tensor) -> float:
        return float((10 * torch.log10(1 / ((x.clamp(0, 1) - clean_val) ** 2).flatten(1).mean(1))).mean())

    from pnp_stable.denoisers import load

    with torch.no_grad():
        shipped = psnr(load("gray")(noisy_val, sigma))
    model = RidgeResolvent(args.channels, args.mid, args.lam)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    # a 5 % warm-up, of at least two steps (OneCycleLR divides by the warm-up's length minus one)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps,
                                                   pct_start=max(0.05, 3.0 / args.steps))
    rng = np.random.default_rng(args.seed)
    history, tic = [], time.time()
    for step in range(1, args.steps + 1):
        patches = []
        for _ in range(args.batch):
            im = images[rng.integers(len(images))]
            i, j = rng.integers(im.shape[0] - args.patch), rng.integers(im.shape[1] - args.patch)
            patch = im[i:i + args.patch, j:j + args.patch]
            patch = patch.flip(0) if rng.random() < 0.5 else patch
            patch = patch.flip(1) if rng.random() < 0.5 else patch
            patches.append(patch.T if rng.random() < 0.5 else patch)
        clean = torch.stack(patches)[:, None]
        loss = ((model(clean + sigma * torch.randn_like(clean), args.tol) - clean) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        model.activation.project_parameters_()
        if step % args.val_every == 0 or step == args.steps:
            with torch.no_grad():
                value = psnr(model(noisy_val, 1e-5))
            history.append({"step": step, "psnr": value, "iterations": model.last_iterations,
                            "lam": float(model.log_lam.detach().exp()), "seconds": time.time() - tic})
            print(f"step {step}: validation {value:.2f} dB ({model.last_iterations} iterations, lam "
                  f"{history[-1]['lam']:.2f}); shipped gray {shipped:.2f} dB; {history[-1]['seconds']:.0f} s", flush=True)
    if args.json:
        record = run_record(__file__, argv, sigma_255=args.sigma, shipped_gray_psnr=shipped, history=history,
                            parameters=sum(p.numel() for p in model.parameters()))
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
