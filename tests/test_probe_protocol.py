"""The classification task's linear probe: its C is chosen on the validation rows, never on test."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tkds.benchmarks.tasks.classification import C_GRID, DEFAULT_C, fit_probe


def planted(seed: int, rows: int = 300, width: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Two classes apart along 3 of `width` columns; the rest is noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    x = rng.normal(size=(rows, width))
    x[:, :3] += 0.8 * (2 * labels[:, None] - 1)
    return x, labels.astype(str)


def masks(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = np.arange(rows)
    return index < 40, (index >= 40) & (index < 140), index >= 140


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_probe_takes_the_c_with_the_best_validation_accuracy(seed: int) -> None:
    x, labels = planted(seed)
    train, val, _ = masks(len(labels))
    _, chosen = fit_probe(x, labels, train, val, seed)
    accuracies = [
        accuracy_score(
            labels[val],
            make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
            .fit(x[train], labels[train])
            .predict(x[val]),
        )
        for c in C_GRID
    ]
    assert chosen == C_GRID[int(np.argmax(accuracies))]


def test_the_test_rows_never_change_the_choice() -> None:
    x, labels = planted(3)
    train, val, test = masks(len(labels))
    probe, chosen = fit_probe(x, labels, train, val, 3)
    scrambled = x.copy()
    scrambled[test] = np.random.default_rng(9).normal(size=(int(test.sum()), x.shape[1]))
    other_labels = labels.copy()
    other_labels[test] = labels[test][::-1]
    probe_again, chosen_again = fit_probe(scrambled, other_labels, train, val, 3)
    assert chosen_again == chosen
    np.testing.assert_array_equal(probe.predict(x[test]), probe_again.predict(x[test]))


def test_without_validation_rows_the_default_c_is_used() -> None:
    x, labels = planted(4)
    train, _, _ = masks(len(labels))
    probe, chosen = fit_probe(x, labels, train, np.zeros(len(labels), dtype=bool), 4)
    assert chosen == DEFAULT_C
    expected = make_pipeline(StandardScaler(), LogisticRegression(C=DEFAULT_C, max_iter=2000, random_state=4))
    expected.fit(x[train], labels[train])
    np.testing.assert_array_equal(probe.predict(x), expected.predict(x))
