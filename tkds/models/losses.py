"""Self-supervised losses as small functions, each with its formula; cos(u, v) = u·v / (|u| |v|)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2N embeddings of N positive pairs (z1[i], z2[i]).

    With z = [z1; z2] and p(i) the index of i's partner:
        ℓ(i) = −log( exp(cos(z_i, z_p(i)) / τ) / Σ_{k ≠ i} exp(cos(z_i, z_k) / τ) ),
    and the loss is the mean of ℓ over all 2N rows: each row's 2N − 2 negatives are every other
    embedding but its partner, and the self-similarity is masked out.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, partner)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float, symmetric: bool = True) -> torch.Tensor:
    """Cross-modal InfoNCE between paired rows a[i] ↔ b[i] (e.g. video and audio of one clip).

        ℓ_ab(i) = −log( exp(cos(a_i, b_i) / τ) / Σ_j exp(cos(a_i, b_j) / τ) )
    The loss is the mean of ℓ_ab; with `symmetric`, it is (mean ℓ_ab + mean ℓ_ba) / 2, so each modality
    is also the query of the other.
    """
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, target)) / 2
    return loss


def queue_info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: query q[i]'s positive is key k[i], its negatives are the K queued keys.

        ℓ(i) = −log( exp(cos(q_i, k_i) / τ) / (exp(cos(q_i, k_i) / τ) + Σ_j exp(cos(q_i, queue_j) / τ)) ),
    averaged over i. Keys carry no gradient in MoCo; the caller detaches them.
    """
    q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def vicreg(
    z1: torch.Tensor,
    z2: torch.Tensor,
    invariance: float = 25.0,
    variance: float = 25.0,
    covariance: float = 1.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg (Bardes et al., 2022) on N pairs of D-dim embeddings, with the paper's weights 25/25/1.

    inv  = mean_{i,d} (z1_id − z2_id)²
    var  = Σ_{z ∈ {z1, z2}} mean_d max(0, 1 − sqrt(Var_i(z_d) + ε)) / 2      (Var unbiased)
    cov  = Σ_{z ∈ {z1, z2}} Σ_{d ≠ e} C(z)_de² / D,  C(z) = (z − z̄)ᵀ(z − z̄) / (N − 1)
    loss = invariance·inv + variance·var + covariance·cov
    """
    n, d = z1.shape
    var_term = cov_term = z1.new_zeros(())
    for z in (z1, z2):
        var_term = var_term + F.relu(1 - torch.sqrt(z.var(dim=0) + eps)).mean() / 2
        zc = z - z.mean(dim=0)
        cov = zc.T @ zc / (n - 1)
        cov_term = cov_term + (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d
    return invariance * F.mse_loss(z1, z2) + variance * var_term + covariance * cov_term
