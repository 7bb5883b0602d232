"""The classifier training driver: Ray Train on the training split, a classifier spec at `out`,
and held-out evaluation (accuracy, ROC AUC) through that spec, exactly as `raygan train` loads it.

`out` becomes a classifier spec directory (DESIGN.md, "Classifier spec"): `classifier.json`
(format "factory"), `model.pt`, plus `metrics.json`, `train_config.json` and Ray Train's
`checkpoints/` (a bundle copies only the spec and its weights).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from raygan import storage
from raygan.cluster import require_shared
from raygan.config import ClassifierTrainConfig
from raygan.data.shards import decode_rows, read_table
from raygan.data.splits import Split, filter_split
from raygan.models.classifier import build_classifier, factory_path
from raygan.models.frozen import ClassifierSpec, FrozenClassifier, load_classifier, save_classifier
from raygan.tracking import TrackingConfig
from raygan.train.classifier_loop import ClassifierLoopConfig, classifier_loop
from raygan.train.cluster import check_workers_fit, ensure_ray
from raygan.train.dataset import training_dataset
from raygan.train.run import RunSpec, absolute_uri, fit_run

RUN_NAME = "classifier"
WEIGHTS_FILE = "model.pt"
METRICS_FILE = "metrics.json"
EVAL_BATCH = 256  # images per forward pass in held-out evaluation


@dataclass(frozen=True)
class SplitScores:
    """A classifier's scores on one held-out split."""

    accuracy: float  # share with (p > 0.5) == label; nan when the split is empty
    auc: float  # ROC AUC of p against the label; nan when the split has a single class
    samples: int  # images that decoded and were scored


@dataclass(frozen=True)
class ClassifierResult:
    """What `train_classifier` produced."""

    test_accuracy: float  # accuracy on the held-out test split
    test_auc: float  # ROC AUC on the held-out test split
    val_accuracy: float  # accuracy on the validation split
    epochs: int  # epochs trained in all (across relaunches)
    spec_uri: str  # the classifier spec directory (pass it to `raygan train --classifier`)
    test_samples: int  # test images scored


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U) formula, ties given their average rank."""
    assert scores.shape == labels.shape and scores.ndim == 1, (scores.shape, labels.shape)  # [N], [N]
    positives, n = int((labels == 1).sum()), labels.shape[0]
    negatives = n - positives
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(n, dtype=np.float64)
    start = 0
    while start < n:  # average rank over each run of equal scores
        end = start
        while end + 1 < n and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    rank_sum = ranks[labels == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


@torch.no_grad()
def score_split(
    classifier: FrozenClassifier, data_uri: str, split: Split, *, size: int, channels: int = 1,
    settings: storage.StorageSettings | None = None,
) -> SplitScores:
    """Accuracy and ROC AUC of `classifier` on one split of the labelled shards at `data_uri`."""
    table = filter_split(read_table(data_uri, columns=["image_id", "image", "label"], settings=settings), split)
    probs, labels = [], []
    for start in range(0, table.num_rows, EVAL_BATCH):
        decoded = decode_rows(table.slice(start, EVAL_BATCH), size=size, channels=channels)
        if decoded.images.shape[0] == 0:
            continue
        assert decoded.labels is not None  # the label column was read above
        probs.append(classifier.p_positive(decoded.images).numpy())  # [n]
        labels.append(decoded.labels.numpy())  # [n]
    if not probs:
        return SplitScores(accuracy=math.nan, auc=math.nan, samples=0)
    p, y = np.concatenate(probs), np.concatenate(labels)
    return SplitScores(accuracy=float(((p > 0.5) == (y == 1)).mean()), auc=roc_auc(p, y), samples=int(y.shape[0]))


def _json_scores(scores: SplitScores) -> dict[str, float | int | None]:
    """SplitScores for JSON: nan (undefined) becomes null, which every JSON reader accepts."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in dataclasses.asdict(scores).items()}


def train_classifier(
    data_uri: str,
    out: str,
    *,
    config: ClassifierTrainConfig,
    channels: int = 1,
    settings: storage.StorageSettings | None = None,
) -> ClassifierResult:
    """Train `config.arch` on the training split of `data_uri`; write a classifier spec to `out`."""
    started = time.perf_counter()
    settings = settings or storage.StorageSettings.from_env()
    out, data_uri = absolute_uri(out), absolute_uri(data_uri)
    ensure_ray(workers=config.workers)
    require_shared({"--data": data_uri, "--out": out})  # Ray Data reads the shards; rank 0 writes checkpoints
    check_workers_fit(workers=config.workers, use_gpu=config.use_gpu, what="classifier training")
    run_config = {"data": data_uri, "classifier": dataclasses.asdict(config), "channels": channels}
    storage.write_json(storage.join(out, "train_config.json"), run_config, settings=settings)

    # --- Ray Train over the training split -----------------------------------------------------
    checkpoints = storage.join(out, "checkpoints")
    local_root = storage.join(checkpoints, "classifier-local") if config.workers == 0 else None
    loop = ClassifierLoopConfig(
        config=config, channels=channels, settings=settings, local_checkpoints=local_root,
        tracking=TrackingConfig.for_run(out, run_name=RUN_NAME, params={"classifier": dataclasses.asdict(config),
                                                                         "data": data_uri}),
    )
    dataset = training_dataset(data_uri, size=config.image_size, channels=channels, with_labels=True,
                               settings=settings)
    run_spec = RunSpec(name=RUN_NAME, checkpoints=checkpoints, workers=config.workers, use_gpu=config.use_gpu,
                       max_failures=2, keep=1, local_root=local_root)
    _, state = fit_run(classifier_loop, loop, spec=run_spec, dataset=dataset, settings=settings,
                       what="classifier training", epochs=config.epochs)

    # --- the spec: a "factory" classifier whose input mapping leaves [-1, 1] images unchanged ----
    model = build_classifier(config.arch, image_size=config.image_size, channels=channels)
    model.load_state_dict(state["model"])
    spec = ClassifierSpec(
        format="factory", weights=WEIGHTS_FILE, factory=factory_path(config.arch),
        factory_kwargs={"image_size": config.image_size, "channels": channels},
        size=config.image_size, channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels,
    )
    save_classifier(model, out, spec=spec, settings=settings)

    # --- held-out evaluation through the spec just written --------------------------------------
    classifier = load_classifier(out, settings=settings)
    test = score_split(classifier, data_uri, "test", size=config.image_size, channels=channels, settings=settings)
    val = score_split(classifier, data_uri, "val", size=config.image_size, channels=channels, settings=settings)
    epochs = int(state["epoch"]) + 1
    storage.write_json(storage.join(out, METRICS_FILE), {
        "test": _json_scores(test), "val": _json_scores(val), "epochs": epochs,
        "train": state.get("metrics", {}), "seconds": time.perf_counter() - started,
    }, settings=settings)
    return ClassifierResult(test_accuracy=test.accuracy, test_auc=test.auc, val_accuracy=val.accuracy,
                            epochs=epochs, spec_uri=out, test_samples=test.samples)


__all__ = ["ClassifierResult", "SplitScores", "roc_auc", "score_split", "train_classifier"]
