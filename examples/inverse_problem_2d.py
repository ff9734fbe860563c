"""Example 1 of the book chapter (section 6.1): an ill-conditioned 2-D inverse problem.

Forward model ``y = A x + delta n`` with ``A = [[1 + e, 1], [1, 1 + e]]`` (singular values
``2 + e`` and ``e``; ``e = 1/4`` gives condition number 9), ground truth on the unit circle (a
curved set that no linear method can exploit) and Gaussian noise.

* **Tikhonov** ``x_tau = (A^T A + tau I)^{-1} A^T y``: ``tau*`` is chosen on a log grid by the
  training MSE; its Lipschitz constant is ``L(tau) = max_i sigma_i / (sigma_i^2 + tau)`` and
  ``L* = L(tau*)``.
* **InvNet_L** ``= c * P o B_5 o ... o B_1 o E`` with the zero-padding lift ``E: R^2 -> R^10``,
  five averaged gradient-flow blocks ``B_i`` (``pnp_stable.layers.dense_block``), the projection
  ``P = E^T`` and a learnable scale ``c`` clamped to ``[-L, L]``. The certified Lipschitz bound
  is ``|c|`` times the certificate of ``P o B o E`` computed from the layer certificates.

For each budget ``L in {L*/3, L*, 3 L*}`` it compares the best Tikhonov reconstruction whose
Lipschitz constant is at most ``L`` (for ``L >= L*`` that is ``tau*`` itself) with InvNet_L,
and writes the six test MSEs, figures, ``summary.md`` and ``results.json``.

Run: ``python examples/inverse_problem_2d.py [--out DIR] [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from example_outputs import (
    ExampleParser,
    fill_quick_defaults,
    markdown_table,
    moving_average,
    non_negative_float,
    output_dir,
    positive_float,
    positive_int,
    save_figure_atomic,
    write_json_atomic,
    write_text_atomic,
)
from pnp_stable.layers import CertifiedSequential, Certificate, Lift, Projection, dense_block
from pnp_stable.verification import empirical_lipschitz, lipschitz_ratio, random_pair_search

NAME = "inverse_problem_2d"
DTYPE = torch.float64


# -- the problem ---------------------------------------------------------------------------
def forward_matrix(epsilon: float) -> torch.Tensor:
    return torch.tensor([[1.0 + epsilon, 1.0], [1.0, 1.0 + epsilon]], dtype=DTYPE)


def sample_problem(
    n: int, matrix: torch.Tensor, noise: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: ``x`` uniform on the unit circle, ``y = A x + noise * N(0, I)``."""
    angle = 2 * math.pi * torch.rand(n, generator=generator, dtype=DTYPE)
    x = torch.stack([angle.cos(), angle.sin()], dim=1)
    y = x @ matrix.T + noise * torch.randn(n, 2, generator=generator, dtype=DTYPE)
    return x, y


def mse(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over samples of the squared Euclidean error."""
    return float((estimate - truth).pow(2).sum(dim=1).mean())


# -- Tikhonov ------------------------------------------------------------------------------
def tikhonov_operator(matrix: torch.Tensor, tau: float) -> torch.Tensor:
    """``R_tau = (A^T A + tau I)^{-1} A^T`` (reconstruction ``x = R_tau y``)."""
    gram = matrix.T @ matrix + tau * torch.eye(matrix.shape[1], dtype=matrix.dtype)
    return torch.linalg.solve(gram, matrix.T)


def tikhonov_lipschitz(singular_values: torch.Tensor, tau: float) -> float:
    """``L(tau) = ||R_tau||_2 = max_i sigma_i / (sigma_i^2 + tau)``."""
    return float((singular_values / (singular_values.pow(2) + tau)).max())


def smallest_tau_with_lipschitz(singular_values: torch.Tensor, cap: float) -> float:
    """Smallest ``tau >= 0`` with ``L(tau) <= cap`` (``L`` is decreasing in ``tau``)."""
    return max(0.0, float((singular_values / cap - singular_values.pow(2)).max()))


def best_tikhonov(
    matrix: torch.Tensor, x: torch.Tensor, y: torch.Tensor, taus: list[float], cap: float = math.inf
) -> tuple[float, float]:
    """``(tau, training MSE)`` of the best ``tau`` among ``taus`` (plus the boundary) with ``L(tau) <= cap``."""
    sv = torch.linalg.svdvals(matrix)
    allowed = [t for t in taus if tikhonov_lipschitz(sv, t) <= cap * (1 + 1e-12)]
    floor = smallest_tau_with_lipschitz(sv, cap) if math.isfinite(cap) else 0.0
    # the boundary tau joins unless a grid point already sits on it (then rounding could pick either)
    if floor > 0 and not any(math.isclose(t, floor, rel_tol=1e-9) for t in allowed):
        allowed.append(floor)
    candidates = sorted(allowed)
    scored = [(mse(y @ tikhonov_operator(matrix, t).T, x), t) for t in candidates]
    err, tau = min(scored)
    return tau, err


# -- InvNet --------------------------------------------------------------------------------
class InvNet(nn.Module):
    """``y -> clamp(c, -L, L) * P(N(E y))`` with ``N`` five averaged gradient-flow blocks.

    Guarantee: Lipschitz with constant ``|clamp(c)| * Lip(P N E) <= |c| <= L`` in eval mode, where
    ``Lip(P N E) <= 1`` is certified by the layer certificates (``P N E`` is even averaged).
    """

    def __init__(self, cap: float, width: int = 10, blocks: int = 5, hidden: int = 10, time: float = 1.0) -> None:
        super().__init__()
        self.cap = float(cap)
        self.body = CertifiedSequential(
            Lift(2, width), *[dense_block(width, hidden, time=time) for _ in range(blocks)], Projection(width, 2)
        )
        self.scale = nn.Parameter(torch.tensor(min(1.0, self.cap)))

    def clamped_scale(self) -> torch.Tensor:
        return self.scale.clamp(-self.cap, self.cap)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.clamped_scale() * self.body(y)

    def certificate(self) -> Certificate:
        body = self.body.certificate()
        return Certificate(abs(float(self.clamped_scale().detach())) * body.lipschitz, None, body.details)


def train_invnet(
    cap: float, x: torch.Tensor, y: torch.Tensor, iterations: int, batch: int, lr: float, seed: int
) -> tuple[InvNet, list[float]]:
    """Adam on the mini-batch MSE; ``c`` is projected back onto ``[-L, L]`` after every step."""
    torch.manual_seed(seed)
    net = InvNet(cap).to(DTYPE)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    losses = []
    for _ in range(iterations):
        idx = torch.randint(0, x.shape[0], (min(batch, x.shape[0]),), generator=g)
        loss = (net(y[idx]) - x[idx]).pow(2).sum(dim=1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            net.scale.clamp_(-cap, cap)
        losses.append(float(loss.detach()))
    net.eval()
    return net, losses


def empirical_lipschitz_lower_bound(net: Callable[[torch.Tensor], torch.Tensor], quick: bool, seed: int) -> float:
    """Largest ratio ``||f(a) - f(b)|| / ||a - b||`` found: random pairs (quick) or the full search."""
    if quick:
        objective = lambda a, b: lipschitz_ratio(net, a, b)  # noqa: E731
        return random_pair_search(objective, (2,), n_pairs=256, seed=seed).value
    return empirical_lipschitz(net, (2,), restarts=2, steps=40, n_pairs=64, seed=seed)


# -- figures -------------------------------------------------------------------------------
def plot_reconstructions(path: Path, x_test, panels: list[tuple[str, torch.Tensor, float]], dpi: int) -> None:
    import matplotlib.pyplot as plt

    angle = torch.atan2(x_test[:, 1], x_test[:, 0]).numpy()
    fig, axes = plt.subplots(2, 3, figsize=(12, 8), sharex=True, sharey=True)
    circle = torch.linspace(0, 2 * math.pi, 200)
    for ax, (title, recon, err) in zip(axes.ravel(), panels):
        ax.plot(circle.cos(), circle.sin(), color="0.6", lw=1)
        ax.scatter(recon[:, 0], recon[:, 1], c=angle, cmap="hsv", s=4)
        ax.set_title(f"{title}\ntest MSE {err:.4f}", fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlim(-2, 2)
        ax.set_ylim(-2, 2)
    fig.suptitle("Reconstructions of the test set (colour: true angle; grey: true curve)")
    save_figure_atomic(fig, path, dpi)


def plot_data(path: Path, x, y, matrix, dpi: int) -> None:
    import matplotlib.pyplot as plt

    naive = torch.linalg.solve(matrix, y.T).T
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, (title, pts) in zip(axes, [("ground truth x", x), ("data y = Ax + noise", y), ("naive inverse A^{-1} y", naive)]):
        ax.scatter(pts[:, 0], pts[:, 1], s=3)
        ax.set_title(title)
        ax.set_aspect("equal")
    save_figure_atomic(fig, path, dpi)


def plot_losses(path: Path, curves: dict[str, list[float]], tikhonov_train_mse: float, dpi: int) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, losses in curves.items():
        window = max(1, len(losses) // 100)
        ax.plot(moving_average(losses, window), label=label)
    ax.axhline(tikhonov_train_mse, color="k", ls="--", lw=1, label="Tikhonov tau* (train MSE)")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("mini-batch MSE (moving average)")
    ax.legend()
    save_figure_atomic(fig, path, dpi)


def plot_tau_grid(path: Path, taus, train_errors, lipschitz, tau_star, dpi: int) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(taus, train_errors, "o-", ms=3, label="training MSE")
    ax.axvline(tau_star, color="k", ls="--", lw=1, label="tau*")
    ax.set_xlabel("tau")
    ax.set_ylabel("training MSE")
    twin = ax.twinx()
    twin.loglog(taus, lipschitz, color="C1", label="L(tau)")
    twin.set_ylabel("Lipschitz constant L(tau)", color="C1")
    ax.legend(loc="upper left")
    save_figure_atomic(fig, path, dpi)


# -- main ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ExampleParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help=f"output folder (default examples/output/{NAME}/)")
    p.add_argument("--quick", action="store_true", help="tiny run for smoke tests (seconds)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=positive_int, default=None,
                   help="Adam iterations per network (default 10000; quick 100)")
    p.add_argument("--n-train", type=positive_int, default=None, help="default 2000; quick 256")
    p.add_argument("--n-test", type=positive_int, default=None, help="default 2000; quick 256")
    p.add_argument("--noise", type=non_negative_float, default=0.1, help="standard deviation delta of the noise")
    p.add_argument("--epsilon", type=positive_float, default=0.25,
                   help="e > 0 in A = [[1+e, 1], [1, 1+e]] (singular values 2+e and e)")
    p.add_argument("--batch", type=positive_int, default=256)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    fill_quick_defaults(args, iterations=(100, 10_000), n_train=(256, 2000), n_test=(256, 2000))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns the numbers written to ``results.json``."""
    args = parse_args(argv)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(previous_threads)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The example proper, with parsed arguments (see :func:`main`)."""
    out = output_dir(args.out, NAME)
    start = time.perf_counter()

    matrix = forward_matrix(args.epsilon)
    sv = torch.linalg.svdvals(matrix)
    gen = torch.Generator().manual_seed(args.seed)
    x_train, y_train = sample_problem(args.n_train, matrix, args.noise, gen)
    x_test, y_test = sample_problem(args.n_test, matrix, args.noise, gen)

    taus = [float(t) for t in torch.logspace(-4, 2, 61, dtype=DTYPE)]
    grid_errors = [mse(y_train @ tikhonov_operator(matrix, t).T, x_train) for t in taus]
    tau_star, tau_star_train = best_tikhonov(matrix, x_train, y_train, taus)
    l_star = tikhonov_lipschitz(sv, tau_star)
    best_tikhonov_test = mse(y_test @ tikhonov_operator(matrix, tau_star).T, x_test)

    budgets = [("L*/3", l_star / 3), ("L*", l_star), ("3L*", 3 * l_star)]
    rows, panels_tik, panels_net, curves, per_budget = [], [], [], {}, []
    for label, cap in budgets:
        tau, _ = best_tikhonov(matrix, x_train, y_train, taus, cap)
        r_tau = tikhonov_operator(matrix, tau)
        tik_lip = tikhonov_lipschitz(sv, tau)
        assert abs(tik_lip - float(torch.linalg.matrix_norm(r_tau, ord=2))) < 1e-10 * tik_lip
        tik_recon = y_test @ r_tau.T
        tik_test = mse(tik_recon, x_test)

        net, losses = train_invnet(cap, x_train, y_train, args.iterations, args.batch, args.lr, args.seed)
        with torch.no_grad():
            net_recon = net(y_test)
        net_test = mse(net_recon, x_test)
        cert = net.certificate()
        empirical = empirical_lipschitz_lower_bound(net, args.quick, args.seed)
        if empirical > cert.lipschitz * (1 + 1e-9):
            raise RuntimeError(f"certificate violated: empirical {empirical} > certified {cert.lipschitz}")
        substeps = [d["substeps"] for d in net.body.certificate().details if "substeps" in d]
        curves[f"InvNet, L = {label}"] = losses
        panels_tik.append((f"Tikhonov, L(tau) <= {label} (tau = {tau:.3g})", tik_recon, tik_test))
        panels_net.append((f"InvNet, L = {label} (c = {float(net.clamped_scale().detach()):.3g})", net_recon, net_test))
        scale = float(net.clamped_scale().detach())
        rows.append([label, cap, tau, tik_lip, tik_test, net_test, cert.lipschitz, empirical, scale])
        per_budget.append({
            "budget": label, "cap": cap, "tikhonov_tau": tau, "tikhonov_lipschitz": tik_lip,
            "tikhonov_test_mse": tik_test, "invnet_test_mse": net_test,
            "invnet_certified_lipschitz": cert.lipschitz, "invnet_empirical_lipschitz": empirical,
            "invnet_scale": scale, "invnet_final_train_loss": losses[-1],
            "invnet_substeps": substeps,
        })

    dpi = 40 if args.quick else 110
    plot_reconstructions(out / "reconstructions.png", x_test, panels_tik + panels_net, dpi)
    plot_losses(out / "training_losses.png", curves, tau_star_train, dpi)
    plot_data(out / "data.png", x_test, y_test, matrix, dpi)
    plot_tau_grid(out / "tikhonov_tau.png", taus, grid_errors, [tikhonov_lipschitz(sv, t) for t in taus], tau_star, dpi)

    beats = {b["budget"]: b["invnet_test_mse"] < best_tikhonov_test for b in per_budget}
    elapsed = time.perf_counter() - start
    results = {
        "example": NAME, "quick": args.quick, "seed": args.seed, "iterations": args.iterations,
        "n_train": args.n_train, "n_test": args.n_test, "noise": args.noise, "epsilon": args.epsilon,
        "singular_values": [float(s) for s in sv], "tau_star": tau_star, "L_star": l_star,
        "tikhonov_tau_star_train_mse": tau_star_train, "tikhonov_tau_star_test_mse": best_tikhonov_test,
        "budgets": per_budget, "invnet_beats_best_tikhonov": beats, "wall_seconds": elapsed,
    }
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "summary.md", summary(args, results, rows))
    return results


def summary(args: argparse.Namespace, r: dict[str, Any], rows: list[list[Any]]) -> str:
    table = markdown_table(
        ["budget", "L", "Tikhonov tau", "Tikhonov L(tau)", "Tikhonov test MSE", "InvNet test MSE",
         "InvNet certified Lip.", "InvNet empirical Lip. (lower bound)", "c"],
        rows,
    )
    verdict = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in r["invnet_beats_best_tikhonov"].items())
    cmd = "python examples/inverse_problem_2d.py" + (" --quick" if args.quick else "")
    return f"""# Example 1 — ill-conditioned 2-D inverse problem

`A = [[1+e, 1], [1, 1+e]]`, e = {args.epsilon:g}: singular values {r['singular_values'][0]:.4g} and
{r['singular_values'][1]:.4g}. Ground truth uniform on the unit circle, noise std {args.noise:g};
{args.n_train} training and {args.n_test} test pairs; seed {args.seed}; {args.iterations} Adam
iterations (lr {args.lr:g}, batch {args.batch}) per network. MSE = mean squared Euclidean error.

Tikhonov: tau* = {r['tau_star']:.4g} (log grid 1e-4..1e2, 61 points, training MSE
{r['tikhonov_tau_star_train_mse']:.4g}); **L* = L(tau*) = {r['L_star']:.4g}**; test MSE at tau* =
**{r['tikhonov_tau_star_test_mse']:.4g}**.

For each budget L the Tikhonov column is the best tau on the grid (or the boundary tau) with
L(tau) <= L; for L >= L* that is tau* itself. InvNet_L = c * P o 5 gradient-flow blocks o E with
|c| <= L; its certified Lipschitz bound is |c| times the certificate of P o blocks o E (eval
mode, certified spectral norms); the empirical value is a lower bound from random and
adversarial pairs (`pnp_stable.verification.empirical_lipschitz`).

{table}

InvNet test MSE below the best Tikhonov ({r['tikhonov_tau_star_test_mse']:.4g}): {verdict}.

Figures: `reconstructions.png`, `training_losses.png`, `data.png`, `tikhonov_tau.png`.
Wall time {r['wall_seconds']:.0f} s (`{cmd}`, 1 torch thread).
"""


if __name__ == "__main__":
    main()
