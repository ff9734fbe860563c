"""Composition of certified layers, with the certificate of the whole network."""

from __future__ import annotations

import math

import torch
from torch import nn

from pnp_stable.layers.certificates import Certificate, certificate_of, compose
from pnp_stable.layers.lift import Lift, Projection

__all__ = ["CertifiedSequential", "certify_layers"]


def certify_layers(layers: list[nn.Module]) -> Certificate:
    """Certificate of ``layers`` applied in order.

    Composition uses the Combettes-Yamada rule; a :class:`Lift` closed by the matching
    :class:`Projection` keeps the constants of what lies between (``P N E`` rule). A layer
    without a certificate makes the Lipschitz bound infinite and averagedness unproven.
    """
    certs: list[Certificate] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Lift):
            depth, j = 0, i + 1
            while j < len(layers):
                if isinstance(layers[j], Lift):
                    depth += 1
                elif isinstance(layers[j], Projection):
                    if depth == 0:
                        break
                    depth -= 1
                j += 1
            if j < len(layers):
                inner = certify_layers(layers[i + 1 : j])
                proj = layers[j]
                matched = (proj.in_dim, proj.out_dim, proj.dim) == (layer.out_dim, layer.in_dim, layer.dim)
                certs.append(inner if matched else Certificate(inner.lipschitz, None, inner.details))
                i = j + 1
                continue
        cert = certificate_of(layer)
        if cert is None:
            cert = Certificate(lipschitz=math.inf, averagedness=None,
                               details=({"layer": type(layer).__name__, "certified": False},))
        certs.append(cert)
        i += 1
    return compose(certs)


class CertifiedSequential(nn.Sequential):
    """``nn.Sequential`` that also reports the certificate of the composed map.

    Keyword arguments of ``forward`` (e.g. ``bias_shift``) are passed to the layers that accept
    them (gradient-flow blocks); other layers get ``x`` alone.
    """

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            if kwargs and getattr(layer, "accepts_conditioning", False):
                x = layer(x, **kwargs)
            else:
                x = layer(x)
        return x

    def certificate(self) -> Certificate:
        return certify_layers(list(self))

    def certified_lipschitz_bound(self) -> float:
        return self.certificate().lipschitz

    def certified_averagedness(self) -> float | None:
        return self.certificate().averagedness
