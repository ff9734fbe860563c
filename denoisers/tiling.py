"""Denoising large images in tiles, with exactly the output (and so the certificate) of one call.

A convolutional denoiser's memory grows with the image: the shipped ``gray`` holds about 1.2 KB of
activations per pixel, so a 12-megapixel photograph needs ~15 GB per plane in one call.
:class:`TiledDenoiser` bounds that by denoising overlapping crops and keeping each crop's centre.

Why the result is exact (the guarantee): every layer of our denoisers is local. A ``k x k``
zero-padded convolution with dilation ``d`` makes an output pixel depend on inputs at most
``r = d (k - 1) / 2`` pixels away (in each axis), and so does its adjoint; pointwise maps (the
activations, lift, projection, centring, relaxation, input injection, the noise-level heads, the
opponent colour transform) add nothing. One sub-step of a gradient-flow block
``x - h A^T s(Ax + b)`` evaluates the field once per integrator stage, so a block that takes ``n``
sub-steps of an ``E``-stage integrator reaches ``2 r E n`` pixels; :func:`receptive_field` sums
that over the blocks, with ``n`` the count evaluation uses at full integration time (a
time-conditioned block takes at most that many). If a crop extends at least that radius beyond
its centre on every side that is not an image border, the zero padding at the crop's artificial
edges cannot reach the centre, and at the image's own borders the crop pads exactly as the whole
image does. Strided potentials also see the position modulo the stride, so crops start at multiples
of the strides' least common multiple. The tiled map therefore *is* the untiled map (up to float
rounding, as any change of evaluation order), and it inherits its certificate.

Assumptions: evaluation mode (in training mode sub-step counts follow a power estimate, so the
wrapper calls the model on the whole image), zero padding (a circular convolution wraps around the
image and is not tiled exactly), and a stateless denoiser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pnp_stable.layers import Certificate, ConvMap, GradientFlowBlock, Lift, Projection
from pnp_stable.layers.certificates import StatedConstants, certificate_of
from pnp_stable.protocols import accepts_noise_level

__all__ = ["ReceptiveField", "TiledDenoiser", "receptive_field", "default_tile", "AUTO_TILE_PIXELS"]

#: images with more pixels per denoiser call than this are tiled by default in restoration tasks
#: (about 1.2 GB of activations for the shipped models in one call)
AUTO_TILE_PIXELS = 1024 * 1024


def default_tile(device: torch.device | str) -> int:
    """The tile (centre) size used when tiling is automatic.

    CPU: 256. Measured with the shipped ``gray`` on 2 cores (docs/benchmarks.md, "Tiled
    denoising"): no slower than one call despite the overlap (crops of 332 x 332 stay in cache),
    under 0.1 GB above the process's baseline at any image size. CUDA: 1024, where large
    launches pay and the 38-pixel margin adds 8 % of work (crops of ~1.2 Mpixel, ~1.5 GB).
    """
    return 1024 if torch.device(device).type == "cuda" else 256

# what the solvers and the restoration tasks read from a denoiser, passed through unchanged
_DELEGATED = ("metadata", "config", "strength_kind", "needs_sigma", "pnp_parameter_rule", "noise_level_range",
              "trained_noise_level")


@dataclass(frozen=True)
class ReceptiveField:
    """An output pixel depends only on inputs within ``radius`` pixels (per axis); crops must start
    at multiples of ``alignment`` to see the same computation as the whole image."""

    radius: int
    alignment: int = 1

    def then(self, other: "ReceptiveField") -> "ReceptiveField":
        """The field of this map followed by ``other``."""
        return ReceptiveField(self.radius + other.radius, math.lcm(self.alignment, other.alignment))


def _conv_field(conv: Any) -> ReceptiveField | None:
    """One zero-padded ``same`` convolution (or its adjoint)."""
    if not isinstance(conv, ConvMap) or conv.padding_mode != "zeros":
        return None
    span = conv.dilation * (conv.kernel_size - 1)
    if conv.padding != span // 2:
        return None
    return ReceptiveField(span // 2, conv.stride)


def _layer_field(layer: nn.Module) -> ReceptiveField | None:
    from pnp_stable.denoisers.models import FreeResidualBlock

    if isinstance(layer, (Lift, Projection)):
        return ReceptiveField(0)
    if isinstance(layer, GradientFlowBlock):
        conv = _conv_field(layer.linear)
        if conv is None:
            return None
        # A then A^T per field evaluation, one evaluation per stage, the certified sub-step count
        evaluations = layer.integrator.evaluations * layer.substeps(certified=True)
        return ReceptiveField(2 * conv.radius * evaluations, conv.alignment)
    if isinstance(layer, FreeResidualBlock):
        analysis, synthesis = _conv_field(layer.analysis), _conv_field(layer.synthesis)
        if analysis is None or synthesis is None:
            return None
        return analysis.then(synthesis)
    return None


def receptive_field(denoiser: Any) -> ReceptiveField | None:
    """How far an output pixel of ``denoiser`` (in eval mode) can see, or None if unknown.

    Known: our certified and unconstrained denoisers (zero padding), the opponent-colour wrapper
    of one, and any module with a ``receptive_field()`` method returning a :class:`ReceptiveField`. Circular padding and unknown layers give None (no exact tiling).
    """
    from pnp_stable.denoisers.color import OpponentColorDenoiser
    from pnp_stable.denoisers.models import _ConditionedDenoiser

    own = getattr(denoiser, "receptive_field", None)
    if callable(own):
        field = own()
        return field if isinstance(field, ReceptiveField) else None
    if isinstance(denoiser, OpponentColorDenoiser):
        return receptive_field(denoiser.gray)
    if isinstance(denoiser, _ConditionedDenoiser):
        total = ReceptiveField(0)
        for layer in denoiser.network:
            field = _layer_field(layer)
            if field is None:
                return None
            total = total.then(field)
        return total
    return None


def _starts(size: int, tile: int) -> list[tuple[int, int]]:
    return [(start, min(size, start + tile)) for start in range(0, size, tile)]


def _shift(part: slice, offset: int) -> slice:
    return slice(part.start + offset, part.stop + offset)


class TiledDenoiser(StatedConstants, nn.Module):
    """``denoiser`` applied to overlapping crops: memory bounded by the crop, output unchanged.

    Args:
        denoiser: called as ``D(x, sigma)`` or ``D(x)`` on ``B x C x H x W`` images.
        tile: side of the centre kept from each crop (rounded up to the alignment).
        margin: context on each side of a centre; default (and at least, for exactness) the
            denoiser's :func:`receptive_field` radius.

    Guarantee: when ``exact`` (the receptive field is known and ``margin`` covers it), the output
    equals ``denoiser``'s on the whole image in eval mode (see the module docstring), so
    :meth:`certificate` is ``denoiser``'s. With a smaller margin or an unknown field the output is an
    approximation near crop seams and no certificate is stated.
    """

    def __init__(self, denoiser: nn.Module, tile: int = 256, margin: int | None = None) -> None:
        super().__init__()
        if not (isinstance(tile, int) and tile >= 1):
            raise ValueError(f"tile must be a positive number of pixels, got {tile!r}")
        if callable(getattr(denoiser, "warm_start_state", None)):
            raise ValueError("this denoiser keeps state between calls, so its tiles would not be independent; "
                             "apply it to the whole image")
        field = receptive_field(denoiser)
        given = margin is not None
        if margin is None:
            if field is None:
                raise ValueError("the receptive field of this denoiser is unknown: give a margin "
                                 "(the tiled output is then an approximation without a certificate)")
            margin = field.radius
        if not (isinstance(margin, int) and margin >= 0):
            raise ValueError(f"margin must be a non-negative number of pixels, got {margin!r}")
        self.denoiser = denoiser
        self.requested_tile = tile
        # a margin left to the field follows it when the weights change (more sub-steps see further)
        self.margin_given = given
        self.margin = margin
        self._settle(field)
        self.accepts_noise_level = accepts_noise_level(denoiser)
        self.train(bool(getattr(denoiser, "training", False)))

    def _settle(self, field: ReceptiveField | None) -> None:
        """Tile, margin and exactness for the denoiser's receptive field ``field`` now."""
        self.field = field
        self.alignment = field.alignment if field is not None else 1
        self.tile = -(-self.requested_tile // self.alignment) * self.alignment
        if field is not None and not self.margin_given:
            self.margin = field.radius
        self.exact = field is not None and self.margin >= field.radius

    def refresh(self) -> None:
        """Recompute the receptive field from the denoiser as it is now. Its weights may have changed
        since wrapping (``load_state_dict``, fine-tuning): a block whose certified norm grew takes
        more sub-steps and sees further, and crops cut to the old field would no longer give the
        whole-image output (measured: a Lipschitz constant of 1.008 against a certified 1).
        :meth:`forward` and :meth:`certificate` call it: a default margin follows the field, a given
        one that no longer covers it makes the tiling inexact (no certificate)."""
        self._settle(receptive_field(self.denoiser))

    def __getattr__(self, name: str) -> Any:
        if name in _DELEGATED:
            return getattr(self._modules["denoiser"], name)
        return super().__getattr__(name)

    def _inner_training(self) -> bool:
        # the blocks' own flags decide their sub-step counts, whatever this wrapper's flag says
        return any(m.training for m in self.denoiser.modules()) if isinstance(self.denoiser, nn.Module) else False

    def _call(self, x: torch.Tensor, sigma: Any) -> torch.Tensor:
        return self.denoiser(x, sigma) if self.accepts_noise_level else self.denoiser(x)

    def tiles(self, height: int, width: int) -> list[tuple[slice, slice, slice, slice]]:
        """For each tile: the crop's rows and columns in the image, then the centre's within the crop."""
        out = []
        for i0, i1 in _starts(height, self.tile):
            r0 = max(0, i0 - self.margin)
            r0 -= r0 % self.alignment
            r1 = min(height, i1 + self.margin)
            for j0, j1 in _starts(width, self.tile):
                c0 = max(0, j0 - self.margin)
                c0 -= c0 % self.alignment
                c1 = min(width, j1 + self.margin)
                out.append((slice(r0, r1), slice(c0, c1), slice(i0 - r0, i1 - r0), slice(j0 - c0, j1 - c0)))
        return out

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """Denoise ``x`` (``B x C x H x W``) crop by crop; one call when it fits in one tile."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"expected a B x C x H x W tensor, got shape {tuple(getattr(x, 'shape', ()))}")
        height, width = x.shape[-2:]
        if self._inner_training() or (height <= self.tile and width <= self.tile):
            return self._call(x, sigma)
        self.refresh()
        out: torch.Tensor | None = None
        for rows, cols, keep_rows, keep_cols in self.tiles(height, width):
            part = self._call(x[..., rows, cols], sigma)[..., keep_rows, keep_cols]
            if out is None:
                out = part.new_empty(*part.shape[:2], height, width)
            out[..., _shift(keep_rows, rows.start), _shift(keep_cols, cols.start)] = part
        assert out is not None
        return out

    def certificate(self) -> Certificate | None:
        """The wrapped denoiser's certificate when the tiling is exact, else None."""
        inner = certificate_of(self.denoiser)
        self.refresh()
        if inner is None or not self.exact:
            return None
        note = {"layer": "tiling", "tile": self.tile, "margin": self.margin,
                "note": "crops extend beyond the receptive field: output identical to the untiled denoiser"}
        return Certificate(inner.lipschitz, inner.averagedness, (note, *inner.details))

    def extra_repr(self) -> str:
        return f"tile={self.tile}, margin={self.margin}, exact={self.exact}"
