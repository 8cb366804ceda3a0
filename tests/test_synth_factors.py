"""SynthTok's generative factors behave like TikTok's, and the likes ceiling is what the model says."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tkds.synth.factors import (
    SynthConfig,
    bayes_r2,
    build_world,
    draw_videos,
    likes_terms,
)
from tkds.tiktok import rounded_count

N = 20_000


@pytest.fixture(scope="module")
def world_and_draws():
    world = build_world(SynthConfig(videos=N, seed=3))
    return world, draw_videos(world, N, np.random.default_rng(0))


def test_sounds_are_reused_with_zipf_popularity(world_and_draws) -> None:
    _, draws = world_and_draws
    uses = np.array(sorted(Counter(draws.sound[draws.sound >= 0].tolist()).values(), reverse=True))
    ranks = np.arange(1, uses.size + 1)
    head = slice(0, 200)
    slope = np.polyfit(np.log(ranks[head]), np.log(uses[head]), 1)[0]
    assert -1.6 < slope < -0.6, f"rank-frequency slope {slope:.2f} is not Zipf-like"
    assert uses[0] > 20 * np.median(uses), "the top sound should dwarf the typical one"
    reused = uses[uses > 1].sum() / uses.sum()
    assert reused > 0.9, "most videos should sit on a sound that other videos use too"
    original_share = np.mean(draws.sound < 0)
    assert 0.08 < original_share < 0.16


def test_sounds_mostly_come_from_the_videos_home_category(world_and_draws) -> None:
    world, draws = world_and_draws
    homes = np.array([s.home_category for s in world.sounds])
    catalogue = draws.sound >= 0
    share = np.mean(homes[draws.sound[catalogue]] == draws.category[catalogue])
    expected = world.config.home_sound_prob
    assert expected < share < expected + 0.15


def test_followers_are_log_normal_and_spread_over_orders_of_magnitude(world_and_draws) -> None:
    world, _ = world_and_draws
    followers = np.array([a.followers for a in world.authors])
    log10 = np.log10(followers)
    assert 0.65 < log10.std() < 0.9  # ln-sd 1.8
    assert 3.4 < np.median(log10) < 4.4
    assert followers.max() / np.median(followers) > 100


def test_categories_are_balanced_and_authors_specialise(world_and_draws) -> None:
    world, draws = world_and_draws
    counts = np.bincount(draws.category, minlength=world.config.categories)
    assert np.all(np.abs(counts / (N / world.config.categories) - 1) < 0.1)
    top_share = [
        np.bincount(draws.category[draws.author == a], minlength=8).max() / max(1, np.sum(draws.author == a))
        for a in range(len(world.authors))
        if np.sum(draws.author == a) >= 10
    ]
    assert np.median(top_share) > 0.4, "authors should post mostly in their preferred categories"


def test_outliers_are_far_from_the_prototype(world_and_draws) -> None:
    _, draws = world_and_draws
    assert 0.02 < draws.outlier.mean() < 0.04
    assert np.median(draws.originality[draws.outlier]) > 2.5 * np.median(draws.originality[~draws.outlier])


def test_originality_is_slightly_negative_against_likes(world_and_draws) -> None:
    world, draws = world_and_draws
    y = sum(likes_terms(world, draws).values())
    correlation = np.corrcoef(draws.originality, y)[0, 1]
    assert -0.15 < correlation < 0


def test_bayes_r2_orders_the_feature_sets_and_matches_the_corpus(world_and_draws) -> None:
    world, draws = world_and_draws
    r2 = bayes_r2(world, draws, monte_carlo=100_000)
    population, corpus = r2["population"], r2["corpus"]
    assert 0 < population["content_only"] < population["author_only"] < population["all"] < 1
    for key in population:  # 20k draws estimate the population value closely
        assert corpus[key] == pytest.approx(population[key], abs=0.03)


def test_bayes_r2_is_the_best_any_predictor_does(world_and_draws) -> None:
    world, draws = world_and_draws
    y = sum(likes_terms(world, draws).values())
    ceiling = bayes_r2(world, draws, monte_carlo=50_000)["corpus"]["author_only"]
    # A flexible learner on author identity, fitted on one half, cannot beat the ceiling on the other.
    train = np.arange(N) % 2 == 0
    means = {a: y[train & (draws.author == a)].mean() for a in np.unique(draws.author[train])}
    test = ~train & np.isin(draws.author, list(means))
    fitted = np.array([means[a] for a in draws.author[test]])
    held_out = 1 - np.mean((y[test] - fitted) ** 2) / np.var(y[test])
    assert 0.3 < held_out < ceiling + 0.01


@pytest.mark.parametrize(
    ("exact", "shown"), [(4_001_943, 4_000_000), (257_213, 257_200), (11_437, 11_400), (9_999, 9_999)]
)
def test_stats_are_rounded_as_tiktok_rounds_them(exact: int, shown: int) -> None:
    assert rounded_count(exact) == shown


def test_same_seed_same_world_other_seed_other_world() -> None:
    config = SynthConfig(videos=50, seed=11)
    assert build_world(config).authors == build_world(config).authors
    assert build_world(config).authors != build_world(SynthConfig(videos=50, seed=12)).authors
