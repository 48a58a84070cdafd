"""Fit the tier model: standardisation and logistic regression, cross-validated, written as policy YAML.

scikit-learn and matplotlib are imported inside the functions that need them, because importing
scikit-learn costs about a second and the gateway never trains.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from engine.embedding.base import Embedder
from engine.stages.tier.features import LEXICAL_FEATURES, extract_features
from engine.stages.tier.policy import FEATURE_NAMES, SEMANTIC_INDEX, MarkerVocabularies, TierModel
from engine.stages.tier.training_data import Row

# Source of feature 15: embeddings with centroids fitted on the training rows ("embed"), values
# given in the rows such as those the gateway logged ("fixed"), or none ("off").
SemanticMode = Literal["embed", "fixed", "off"]

EMBED_BATCH = 32
CENTROID_DECIMALS = 5


@dataclass
class Dataset:
    """Training rows as arrays: 14 lexical columns, the labels (1 = hard) and feature 15's source."""

    lexical: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray | None = None
    semantic: np.ndarray | None = None
    groups: np.ndarray | None = None  # cross-validation keeps each group in one fold

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "Dataset":
        return Dataset(
            lexical=self.lexical[index],
            labels=self.labels[index],
            embeddings=None if self.embeddings is None else self.embeddings[index],
            semantic=None if self.semantic is None else self.semantic[index],
            groups=None if self.groups is None else self.groups[index],
        )


@dataclass
class FittedModel:
    coefficients: np.ndarray  # 15 values, for standardised features
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    hard_centroid: np.ndarray | None = None
    easy_centroid: np.ndarray | None = None

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        logits = ((matrix - self.mean) / self.scale) @ self.coefficients + self.intercept
        return 1.0 / (1.0 + np.exp(-logits))


def group_array(rows: Sequence[Row]) -> np.ndarray | None:
    """Return each row's cross-validation group (its own key when it has none), or None if no row has one."""
    if not any(row.group for row in rows):
        return None
    return np.array([row.group or f"row:{row.key}" for row in rows], dtype=object)


def lexical_matrix(rows: Sequence[Row], markers: MarkerVocabularies) -> np.ndarray:
    """Return features 1 to 14 of each row: extracted from its request body, or as logged."""
    matrix = np.empty((len(rows), len(LEXICAL_FEATURES)), dtype=np.float64)
    for index, row in enumerate(rows):
        values = extract_features(row.body, markers) if row.body is not None else row.features
        matrix[index] = [values[name] for name in LEXICAL_FEATURES]
    return matrix


def embed_texts(embedder: Embedder, texts: Sequence[str], advance: Callable[[int], None] | None = None) -> np.ndarray:
    """Embed texts in batches; `advance(n)` is called after each batch (for a progress bar)."""
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        batch = list(texts[start : start + EMBED_BATCH])
        parts.append(np.asarray(embedder.embed(batch), dtype=np.float32))
        if advance is not None:
            advance(len(batch))
    if not parts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.vstack(parts)


def centroids(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the unit mean embedding of the hard rows and of the easy rows."""
    hard = embeddings[labels == 1].mean(axis=0)
    easy = embeddings[labels == 0].mean(axis=0)
    return hard / np.linalg.norm(hard), easy / np.linalg.norm(easy)


def semantic_column(embeddings: np.ndarray, hard: np.ndarray, easy: np.ndarray) -> np.ndarray:
    """Compute feature 15 for unit embeddings: cos(hard centroid) - cos(easy centroid)."""
    return embeddings @ hard - embeddings @ easy


def fit(data: Dataset, mode: SemanticMode, *, seed: int = 0) -> FittedModel:
    """Fit standardisation and logistic regression on a dataset (centroids too, in mode `embed`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    hard = easy = None
    if mode == "embed":
        assert data.embeddings is not None
        hard, easy = centroids(data.embeddings, data.labels)
        semantic = semantic_column(data.embeddings, hard, easy)
    elif mode == "fixed":
        assert data.semantic is not None
        semantic = data.semantic
    else:
        semantic = None

    matrix = data.lexical if semantic is None else np.column_stack([data.lexical, semantic])
    scaler = StandardScaler().fit(matrix)
    classifier = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000, random_state=seed)
    classifier.fit(scaler.transform(matrix), data.labels)

    coefficients = classifier.coef_[0].astype(np.float64)
    mean = scaler.mean_.astype(np.float64)
    scale = scaler.scale_.astype(np.float64)
    if semantic is None:
        # Features 1-14 only: feature 15 gets weight 0 and a neutral standardisation.
        coefficients = np.append(coefficients, 0.0)
        mean = np.append(mean, 0.0)
        scale = np.append(scale, 1.0)
    return FittedModel(coefficients, float(classifier.intercept_[0]), mean, scale, hard, easy)


def full_matrix(data: Dataset, model: FittedModel, mode: SemanticMode) -> np.ndarray:
    """Return the 15-column matrix of a dataset under a fitted model (feature 15 from its centroids)."""
    if mode == "embed":
        assert data.embeddings is not None
        assert model.hard_centroid is not None
        assert model.easy_centroid is not None
        semantic = semantic_column(data.embeddings, model.hard_centroid, model.easy_centroid)
    elif mode == "fixed":
        assert data.semantic is not None
        semantic = data.semantic
    else:
        semantic = np.zeros(len(data))
    return np.column_stack([data.lexical, semantic])


def cross_validated_probabilities(
    data: Dataset, mode: SemanticMode, folds: int, *, seed: int = 0, advance: Callable[[], None] | None = None
) -> np.ndarray:
    """Return out-of-fold strong-tier probabilities from stratified k-fold cross-validation.

    Centroids are fitted inside each fold, so feature 15 never sees the labels of the rows it scores.
    With groups, StratifiedGroupKFold keeps each group in one fold. Near-duplicates, such as the
    requests of one session, then cannot inflate the AUC.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    probabilities = np.empty(len(data), dtype=np.float64)
    if data.groups is not None:
        splits = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            data.lexical, data.labels, data.groups
        )
    else:
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(data.lexical, data.labels)
    for train_index, test_index in splits:
        if len(np.unique(data.labels[train_index])) < 2:
            raise ValueError("a cross-validation fold has only one label; use fewer folds or more groups")
        model = fit(data.subset(train_index), mode, seed=seed)
        test = data.subset(test_index)
        probabilities[test_index] = model.probabilities(full_matrix(test, model, mode))
        if advance is not None:
            advance()
    return probabilities


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def threshold_for_recall(labels: np.ndarray, probabilities: np.ndarray, target_recall: float) -> float:
    """Return the highest threshold t such that at least `target_recall` of hard rows have probability >= t.

    Used as the cheap tier's `below`: requests under t go to the cheap tier.
    """
    hard = np.sort(probabilities[labels == 1])[::-1]
    if len(hard) == 0:
        raise ValueError("no hard rows: a threshold for a recall of hard requests needs some")
    needed = max(1, math.ceil(target_recall * len(hard) - 1e-9))
    return float(hard[needed - 1])


def confusion(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, int]:
    """Count outcomes with `strong` meaning probability >= threshold and `hard` meaning label 1."""
    strong = probabilities >= threshold
    return {
        "hard_to_strong": int(np.sum(strong & (labels == 1))),
        "hard_to_cheap": int(np.sum(~strong & (labels == 1))),
        "easy_to_cheap": int(np.sum(~strong & (labels == 0))),
        "easy_to_strong": int(np.sum(strong & (labels == 0))),
    }


def save_calibration_plot(labels: np.ndarray, probabilities: np.ndarray, path: Path, title: str) -> None:
    """Draw predicted probability against the observed share of hard rows, per bin, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(labels, probabilities, n_bins=10, strategy="quantile")
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    axes.plot(predicted, observed, marker="o", label="tier model (cross-validated)")
    axes.set_xlabel("predicted probability of hard")
    axes.set_ylabel("observed share of hard requests")
    axes.set_title(title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def model_document(
    model: FittedModel,
    *,
    embedder_name: str | None,
    rows: int,
    hard_rows: int,
    cv_auc: float,
    folds: int,
    target_recall: float,
    threshold: float,
    sources: list[str],
) -> dict[str, Any]:
    """Return the `tier_model` mapping, validated by the policy model before it is returned."""
    document: dict[str, Any] = {
        "features": list(FEATURE_NAMES),
        "coefficients": [_round(value) for value in model.coefficients],
        "intercept": _round(model.intercept),
        "mean": [_round(value) for value in model.mean],
        "scale": [_round(value) for value in model.scale],
    }
    if model.hard_centroid is not None and model.easy_centroid is not None and model.coefficients[SEMANTIC_INDEX] != 0:
        document["embedder"] = embedder_name
        document["centroids"] = {
            "hard": [round(float(value), CENTROID_DECIMALS) for value in model.hard_centroid],
            "easy": [round(float(value), CENTROID_DECIMALS) for value in model.easy_centroid],
        }
    document["provenance"] = {
        "trained_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "rows": rows,
        "hard_rows": hard_rows,
        "cv_auc": round(cv_auc, 4),
        "cv_folds": folds,
        "target_recall": target_recall,
        "threshold": round(threshold, 4),
        "sources": sources,
    }
    TierModel.model_validate(document)
    return document


def render_yaml(document: dict[str, Any], header: list[str]) -> str:
    """Render the tier_model mapping as YAML with one flow list a line, so diffs stay reviewable."""
    lines = [f"# {line}" if line else "#" for line in header]
    for key, value in document.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            for inner_key, inner_value in value.items():
                lines.append(f"  {inner_key}: {json.dumps(inner_value)}")
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def _round(value: float) -> float:
    return float(f"{float(value):.6g}")
