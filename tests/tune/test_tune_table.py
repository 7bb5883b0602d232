"""The results table: CSV has every column, Markdown is readable, trial metrics rebuild a Score."""

from __future__ import annotations

import csv
import io

import torch

from raygan.config import AUTHORS_INVERSION, TraversalConfig
from raygan.tune.objective import Evaluation, score
from raygan.tune.table import TableRow, score_from_metrics, to_csv, to_markdown


def _score():
    return score(Evaluation(
        p_input=torch.tensor([0.9]), p_reconstruction=torch.tensor([0.8]), p_counterfactual=torch.tensor([0.1]),
        recon_mse=torch.tensor([0.02]), recon_ssim=torch.tensor([0.7]), alphas=torch.tensor([0.0, 0.5, 1.0]),
        probs=torch.tensor([[0.1, 0.5, 0.8]]), steps_used=torch.tensor([100]),
    ))


def test_csv_and_markdown() -> None:
    s = _score()
    rows = [TableRow("authors", "holdout", AUTHORS_INVERSION, TraversalConfig(), s, 1.5, "5000 steps shrunk to 8")]
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert parsed[0]["label"] == "authors" and float(parsed[0]["objective"]) == s.objective
    assert float(parsed[0]["reach"]) == 1.0 and parsed[0]["note"] == "5000 steps shrunk to 8"
    md = to_markdown(rows).splitlines()
    assert md[0].startswith("| settings | sample | images | a | b |") and len(md) == 3
    assert "| authors | holdout | 1 | 4 | 1 | 0.01 | 5000 |" in md[2]


def test_score_from_metrics_round_trip() -> None:
    s = _score()
    metrics = {**s.metrics(), "step": 3, "trial_id": "x"}
    assert score_from_metrics(metrics) == s
