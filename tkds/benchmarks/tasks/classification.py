"""Classification: a linear probe and a weighted kNN (k = 20, cosine) on the label column, train → test.

The probe is logistic regression with C = 1 on standardised features: fixed, so nothing is chosen on test
and every method gets the same protocol. The kNN votes with weights exp(cos / 0.07), solo-learn's
WeightedKNNClassifier. Rows without a label are left out.
Metrics: `{linear,knn}_top1` (accuracy) and `{linear,knn}_macro_f1` (the unweighted mean of per-class F1
over the classes in truth or prediction).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tkds.benchmarks.features import embedding, in_split, knn_vote, missing_reason

NAME = "classification"
NEEDS = ("label",)
K = 20
C = 1.0


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


def run(table: pl.DataFrame, features: str, seed: int) -> dict[str, float]:
    """Top-1 accuracy and macro-F1 of the linear probe and the kNN, on the labelled test rows."""
    if skip_reason(table) is not None:
        return {}
    x = embedding(table, features)
    labels = table["label"].to_numpy()
    labelled = table["label"].is_not_null().to_numpy()
    train, test = labelled & in_split(table, "train"), labelled & in_split(table, "test")
    classes, y_train = np.unique(labels[train], return_inverse=True)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
    predictions = {
        "linear": probe.fit(x[train], labels[train]).predict(x[test]),
        "knn": classes[knn_vote(x[test], x[train], np.eye(len(classes))[y_train], K).argmax(axis=1)],
    }
    metrics = {}
    for method, predicted in predictions.items():
        metrics[f"{method}_top1"] = float(accuracy_score(labels[test], predicted))
        metrics[f"{method}_macro_f1"] = float(
            f1_score(labels[test], predicted, average="macro", zero_division=0)
        )
    return metrics
