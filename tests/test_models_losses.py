"""Each loss against a direct, loop-by-loop computation of its docstring formula."""

from __future__ import annotations

import math

import pytest
import torch

from tkds.models.losses import info_nce, nt_xent, queue_info_nce, vicreg


def _cos(u: torch.Tensor, v: torch.Tensor) -> float:
    return float((u @ v) / (u.norm() * v.norm()))


def _loop_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    z = torch.cat([z1, z2]).double()
    n, total = z1.shape[0], 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        others = sum(math.exp(_cos(z[i], z[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(_cos(z[i], z[partner]) / tau) / others)
    return total / (2 * n)


def _loop_info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> float:
    a, b, total = a.double(), b.double(), 0.0
    for i in range(a.shape[0]):
        denominator = sum(math.exp(_cos(a[i], b[j]) / tau) for j in range(b.shape[0]))
        total += -math.log(math.exp(_cos(a[i], b[i]) / tau) / denominator)
    return total / a.shape[0]


@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_nt_xent_matches_the_formula(tau: float) -> None:
    gen = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 5, generator=gen), torch.randn(6, 5, generator=gen)
    assert float(nt_xent(z1, z2, tau)) == pytest.approx(_loop_nt_xent(z1, z2, tau), abs=1e-5)


def test_nt_xent_masks_self_similarity_and_counts_the_partner_as_positive() -> None:
    # Identical pairs, orthogonal otherwise: with the self term masked, each row's loss is
    # −log(e^{1/τ} / (e^{1/τ} + 2N − 2)). Unmasked, the self term would add another e^{1/τ}.
    n, tau = 4, 0.5
    z = torch.eye(n)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2 * n - 2))
    assert float(nt_xent(z, z, tau)) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("tau", [0.1, 0.7])
def test_info_nce_matches_the_formula_both_ways(tau: float) -> None:
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(5, 8, generator=gen), torch.randn(5, 8, generator=gen)
    one_way = _loop_info_nce(a, b, tau)
    assert float(info_nce(a, b, tau, symmetric=False)) == pytest.approx(one_way, abs=1e-5)
    both = (one_way + _loop_info_nce(b, a, tau)) / 2
    assert float(info_nce(a, b, tau)) == pytest.approx(both, abs=1e-5)


def test_queue_info_nce_matches_the_formula() -> None:
    gen = torch.Generator().manual_seed(3)
    q, k, queue = (torch.randn(n, 6, generator=gen) for n in (4, 4, 10))
    tau, total = 0.2, 0.0
    for i in range(4):
        positive = math.exp(_cos(q[i].double(), k[i].double()) / tau)
        negatives = sum(math.exp(_cos(q[i].double(), queue[j].double()) / tau) for j in range(10))
        total += -math.log(positive / (positive + negatives))
    assert float(queue_info_nce(q, k, queue, tau)) == pytest.approx(total / 4, abs=1e-5)


def test_vicreg_matches_the_formula() -> None:
    gen = torch.Generator().manual_seed(4)
    # Small spread in some dims, so the variance hinge is active in part.
    z1 = torch.randn(7, 5, generator=gen) * torch.tensor([0.3, 2.0, 0.5, 1.5, 0.1])
    z2 = z1 + 0.4 * torch.randn(7, 5, generator=gen)
    n, d, eps = 7, 5, 1e-4
    a, b = z1.double().tolist(), z2.double().tolist()
    inv = sum((a[i][j] - b[i][j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    var = cov = 0.0
    for z in (a, b):
        means = [sum(z[i][j] for i in range(n)) / n for j in range(d)]
        for j in range(d):
            variance = sum((z[i][j] - means[j]) ** 2 for i in range(n)) / (n - 1)
            var += max(0.0, 1 - math.sqrt(variance + eps)) / d / 2
        for j in range(d):
            for e in range(d):
                if j != e:
                    c = sum((z[i][j] - means[j]) * (z[i][e] - means[e]) for i in range(n)) / (n - 1)
                    cov += c**2 / d
    expected = 25 * inv + 25 * var + 1 * cov
    assert float(vicreg(z1, z2)) == pytest.approx(expected, abs=1e-5)
    assert float(vicreg(z1, z2, invariance=1, variance=0, covariance=0)) == pytest.approx(inv, abs=1e-5)
