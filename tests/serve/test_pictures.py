"""One Explanation -> the service's answer: JSON-safe numbers, pictures inline, stored or omitted."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from raygan.explain.explainer import Explanation
from raygan.service.pictures import answer
from raygan.service.schemas import ExplainResponse


def explanation(*, spearman: float = 0.5, crossing: float | None = 0.4) -> Explanation:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 16, 16, generator=g) * 2 - 1  # [C, S, S]
    return Explanation(
        image_id="img-1", image=image, reconstruction=image * 0.9, counterfactual=image * 0.5,
        z1=torch.zeros(8), z2=torch.ones(4), p_input=0.8, p_reconstruction=0.75, p_counterfactual=0.2,
        recon_mse=0.01, recon_ssim=0.9, traversal_alphas=[0.0, 0.5, 1.0], traversal_probs=[0.2, 0.5, 0.75],
        traversal_frames=torch.stack([image * 0.5, image * 0.7, image * 0.9]), monotone=True, spearman=spearman,
        crossing_alpha=crossing, maps={k: torch.rand(1, 16, 16, generator=g) for k in ("diff", "gradcam", "ig")},
        steps_used=10, loss_curve=[1.0, 0.5],
    )


def test_inline_pictures_are_pngs_and_the_answer_fits_the_schema() -> None:
    body = answer(explanation(), batch_size=3, mode="inline")
    model = ExplainResponse(**body, bundle_id="0" * 16, seconds=1.0)
    pictures = model.pictures
    assert pictures.mode == "inline" and len(pictures.traversal_frames) == 3
    for b64 in [pictures.input, pictures.figure, pictures.diff, pictures.gradcam, pictures.ig,
                *pictures.traversal_frames]:
        Image.open(io.BytesIO(base64.b64decode(b64))).load()
    assert Image.open(io.BytesIO(base64.b64decode(pictures.gradcam))).mode == "RGB"  # a heat map over the input
    assert body["traversal"] == {"alphas": [0.0, 0.5, 1.0], "probs": [0.2, 0.5, 0.75]} and body["batch_size"] == 3


def test_undefined_numbers_become_null_not_nan() -> None:
    body = answer(explanation(spearman=math.nan, crossing=None), batch_size=1, mode="none")
    assert body["metrics"]["spearman"] is None and body["metrics"]["crossing_alpha"] is None
    json.dumps(body, allow_nan=False)  # what a JSON response needs
    assert body["pictures"] == {"mode": "none"}


def test_stored_pictures_are_written_under_the_prefix(tmp_path: Path) -> None:
    body = answer(explanation(), batch_size=1, mode="stored", prefix=str(tmp_path / "req1"))
    pictures = body["pictures"]
    assert pictures["mode"] == "stored" and pictures["figure"] == str(tmp_path / "req1" / "figure.png")
    assert [Path(u).name for u in pictures["traversal_frames"]] == ["traversal_000.png", "traversal_001.png",
                                                                     "traversal_002.png"]
    assert all(Path(u).read_bytes().startswith(b"\x89PNG") for u in pictures["traversal_frames"])
    with pytest.raises(ValueError, match="prefix"):
        answer(explanation(), batch_size=1, mode="stored")
