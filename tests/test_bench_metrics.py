"""Every benchmark metric against a small example worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from tkds.benchmarks import metrics

# Rows are queries, columns ranks 1..3; row 1 has no relevant item, so every mean leaves it out.
RANKED = np.array([[0, 1, 0], [0, 0, 0], [1, 0, 1], [0, 0, 1]], dtype=bool)

# Multi-label: 3 queries × 4 labels; query 2 has no true label and is left out.
SCORES = np.array([[0.9, 0.1, 0.8, 0.3], [0.2, 0.7, 0.1, 0.6], [0.5, 0.4, 0.3, 0.2]])
TRUTH = np.array([[1, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=bool)


@pytest.mark.parametrize(("k", "expected"), [(1, 1 / 3), (2, 2 / 3), (3, 1.0)])
def test_recall_at_k(k: int, expected: float) -> None:
    # Answerable rows 0, 2, 3 have their first hit at ranks 2, 1, 3: R@1 = 1/3, R@2 = 2/3, R@3 = 3/3.
    assert metrics.recall_at_k(RANKED, k) == pytest.approx(expected)


def test_average_precision() -> None:
    # Relevant at ranks 2, 3, 5: (1/2 + 2/3 + 3/5) / 3 = (15 + 20 + 18) / 90 = 53/90.
    assert metrics.average_precision(np.array([0, 1, 1, 0, 1])) == pytest.approx(53 / 90)


def test_mean_average_precision() -> None:
    # Row 0: 1/2. Row 2: (1/1 + 2/3) / 2 = 5/6. Row 3: 1/3. Mean: (3/6 + 5/6 + 2/6) / 3 = 5/9.
    assert metrics.mean_average_precision(RANKED) == pytest.approx(5 / 9)


def test_no_answerable_query_is_nan() -> None:
    assert math.isnan(metrics.recall_at_k(np.zeros((2, 3), dtype=bool), 1))


def test_precision_at_k() -> None:
    # Top-2 of query 0 = labels 0, 2 → 1 hit; of query 1 = labels 1, 3 → 1 hit. (1/2 + 1/2) / 2.
    assert metrics.precision_at_k(SCORES, TRUTH, 2) == pytest.approx(0.5)


def test_recall_at_k_multilabel() -> None:
    # Query 0: 1 of its 2 true labels; query 1: 1 of 1. (1/2 + 1) / 2 = 3/4.
    assert metrics.recall_at_k_multilabel(SCORES, TRUTH, 2) == pytest.approx(0.75)


def test_ndcg_at_k() -> None:
    # Query 0: hit at rank 1, DCG = 1; 2 true labels, ideal = 1 + 1/log2(3). Query 1: hit at rank 2,
    # DCG = 1/log2(3); 1 true label, ideal = 1.
    q0 = 1 / (1 + 1 / math.log2(3))
    q1 = 1 / math.log2(3)
    assert metrics.ndcg_at_k(SCORES, TRUTH, 2) == pytest.approx((q0 + q1) / 2)


def test_ndcg_of_a_perfect_ranking_is_one() -> None:
    assert metrics.ndcg_at_k(TRUTH.astype(float), TRUTH, 5) == pytest.approx(1.0)


def test_r2() -> None:
    # Residuals 0, 0, 0, −1: SS_res = 1. Mean 2.5: SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5. R² = 1 − 1/5.
    assert metrics.r2([1, 2, 3, 4], [1, 2, 3, 5]) == pytest.approx(0.8)
    assert metrics.r2([1, 2, 3, 4], [2.5] * 4) == pytest.approx(0.0)


def test_spearman() -> None:
    # Rank differences 0, 1, 1, 0: ρ = 1 − 6·2 / (4·(16 − 1)) = 0.8.
    assert metrics.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # Ties average: ranks 1, 2.5, 2.5, 4 against 1..4; centred dot 4.5 / √(4.5 · 5).
    assert metrics.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    a, b = np.random.default_rng(0).normal(size=(2, 30))
    assert metrics.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert math.isnan(metrics.spearman([1, 1, 1], [1, 2, 3]))


def test_auroc() -> None:
    # Positive 0.35 beats 0.1 but not 0.4; positive 0.8 beats both: 3 of 4 pairs.
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_demean_within() -> None:
    # Group a: mean 2 → −1, 1; group b: mean 10 → 0.
    assert metrics.demean_within([1, 3, 10], ["a", "a", "b"]) == pytest.approx([-1, 1, 0])


def test_author_demeaned_spearman_reverses_a_between_author_trend() -> None:
    scores, likes, authors = [1, 2, 5, 6, 0], [10, 9, 20, 19, 100], ["a", "a", "b", "b", "solo"]
    # Across authors more score goes with more likes: ranks 1..4 vs 2, 1, 4, 3 → ρ = 1 − 6·4/60 = 0.6.
    assert metrics.spearman(scores[:4], likes[:4]) == pytest.approx(0.6)
    # Within each author the higher score has fewer likes: residuals ∓0.5 vs ±0.5 → ρ = −1; "solo" is dropped.
    assert metrics.author_demeaned_spearman(scores, likes, authors) == pytest.approx(-1.0)


def test_top_decile_delta() -> None:
    # 10 authors × 2 videos: video i and i + 10 share author i mod 10, score = i. Outcome 1 for videos 18
    # and 19 (the top 10 %), else 0: residuals +0.5 for 18, 19 and −0.5 for 8, 9. Top mean 0.5; rest
    # (−0.5 − 0.5) / 18. A singleton author with the highest score is dropped.
    scores = [*range(20), 100]
    outcome = [0.0] * 18 + [1.0, 1.0, 50.0]
    authors = [f"a{i % 10}" for i in range(20)] + ["solo"]
    assert metrics.top_decile_delta(scores, outcome, authors) == pytest.approx(0.5 + 1 / 18)
