"""Projection heads: small MLPs on top of a backbone's features, used only during training."""

from __future__ import annotations

import itertools

from torch import nn


def mlp_head(dims: list[int]) -> nn.Sequential:
    """Linear-BN-ReLU between consecutive `dims`, and a plain Linear last.

    `mlp_head([d, h, p])` is SimCLR's projection head (Linear-BN-ReLU-Linear), also used by MoCo v2 and
    AV-SimCLR; `mlp_head([d, h, h, p])` is VICReg's three-layer expander.
    """
    layers: list[nn.Module] = []
    for d_in, d_out in itertools.pairwise(dims[:-1]):
        layers += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1]))
    return nn.Sequential(*layers)
