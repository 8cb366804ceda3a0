"""Classification: a linear probe and a weighted kNN (k = 20, cosine) on the label column, train → test.

The probe is logistic regression on features standardised with the train rows; its C is the one of
`C_GRID` with the best validation accuracy (the smaller C on a tie), fitted on train alone, so nothing is
chosen on test and every method gets the same protocol; without labelled validation rows it is
`DEFAULT_C`. The kNN votes with weights exp(cos / 0.07), solo-learn's
WeightedKNNClassifier. Rows without a label are left out.
Metrics: `{linear,knn}_top1` (accuracy) and `{linear,knn}_macro_f1` (the unweighted mean of per-class F1
over the classes in truth or prediction). Per-video outputs of the top-1 metrics: each test video's true
and predicted class as indices into the sorted classes of both.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tkds.benchmarks.features import embedding, in_split, knn_vote, missing_reason
from tkds.benchmarks.tasks.per_video import Outputs, record

NAME = "classification"
NEEDS = ("label",)
K = 20
C_GRID = (0.01, 0.1, 1.0, 10.0)
DEFAULT_C = 1.0
MAX_ITER = 2000


def skip_reason(table: pl.DataFrame) -> str | None:
    """Why the task cannot run on `table`, or None."""
    reason = missing_reason(table, NEEDS)
    if reason is not None:
        return reason
    if table["label"].filter(in_split(table, "train")).drop_nulls().n_unique() < 2:
        return "fewer than two distinct labels among the train rows"
    if table["label"].filter(in_split(table, "test")).drop_nulls().is_empty():
        return "no labelled test rows"
    return None


def fit_probe(
    x: np.ndarray, labels: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int
) -> tuple[Pipeline, float]:
    """The linear probe fitted on the `train` rows with the C of `C_GRID` that is best on the `val` rows."""
    scaler = StandardScaler().fit(x[train])
    x_train = scaler.transform(x[train])
    best_c, best_accuracy, best_model = DEFAULT_C, -1.0, None
    for c in C_GRID if val.any() else (DEFAULT_C,):
        model = LogisticRegression(C=c, max_iter=MAX_ITER, random_state=seed).fit(x_train, labels[train])
        accuracy = accuracy_score(labels[val], model.predict(scaler.transform(x[val]))) if val.any() else 0.0
        if accuracy > best_accuracy:
            best_c, best_accuracy, best_model = c, accuracy, model
    return Pipeline([("scale", scaler), ("probe", best_model)]), best_c


def run(table: pl.DataFrame, features: str, seed: int, outputs: Outputs = None) -> dict[str, float]:
    """Top-1 accuracy and macro-F1 of the linear probe and the kNN, on the labelled test rows; the top-1
    metrics' per-video outputs appended to `outputs` when given."""
    if skip_reason(table) is not None:
        return {}
    x = embedding(table, features)
    labels = table["label"].to_numpy()
    labelled = table["label"].is_not_null().to_numpy()
    train, test = labelled & in_split(table, "train"), labelled & in_split(table, "test")
    val = labelled & in_split(table, "val")
    classes, y_train = np.unique(labels[train], return_inverse=True)
    probe, _ = fit_probe(x, labels, train, val, seed)
    predictions = {
        "linear": probe.predict(x[test]),
        "knn": classes[knn_vote(x[test], x[train], np.eye(len(classes))[y_train], K).argmax(axis=1)],
    }
    metrics = {}
    for method, predicted in predictions.items():
        metrics[f"{method}_top1"] = float(accuracy_score(labels[test], predicted))
        metrics[f"{method}_macro_f1"] = float(
            f1_score(labels[test], predicted, average="macro", zero_division=0)
        )
        named = np.unique(np.concatenate([labels[test], predicted]))
        indices = (np.searchsorted(named, labels[test]), np.searchsorted(named, predicted))
        record(outputs, table, np.flatnonzero(test), f"{method}_top1", *indices)
    return metrics
