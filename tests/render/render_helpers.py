"""Explanations, maps and results tables built by hand, for the render tests (no models, no training)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from raygan import storage
from raygan.data.codec import encode_png
from raygan.explain.explainer import Explanation
from raygan.render import png_bytes

SIZE = 32


def _blob(size: int, cy: float, cx: float, width: float) -> torch.Tensor:
    """A Gaussian bump [1, S, S] with its peak at 1, centred at (cy, cx) in [0, 1] coordinates."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / width)[None]


def make_explanation(image_id: str = "img-0", *, size: int = SIZE, frames: int = 5, shift: float = 0.4,
                     map_names: Sequence[str] = ("diff", "gradcam", "ig"), crossing: bool = True) -> Explanation:
    """A real Explanation with a smooth anatomy-like image, a sigmoid traversal crossing 0.5 at `shift`."""
    image = (_blob(size, 0.5, 0.5, 0.08) * 1.6 - 0.8).clamp(-1, 1)  # [1, S, S]
    counterfactual = (image - 0.5 * _blob(size, 0.5, 0.3, 0.01)).clamp(-1, 1)
    alphas = [k / (frames - 1) for k in range(frames)]
    probs = [1 / (1 + math.exp(-(a - shift) * 10)) for a in alphas]
    maps = {"diff": _blob(size, 0.5, 0.3, 0.01), "gradcam": _blob(size, 0.1, 0.1, 0.01),
            "ig": torch.rand(1, size, size, generator=torch.Generator().manual_seed(0))}
    return Explanation(
        image_id=image_id, image=image, reconstruction=image.clone(), counterfactual=counterfactual,
        z1=torch.zeros(16), z2=torch.ones(4), p_input=probs[-1], p_reconstruction=probs[-1],
        p_counterfactual=probs[0], recon_mse=0.0123, recon_ssim=0.91, traversal_alphas=alphas,
        traversal_probs=probs, traversal_frames=torch.stack([counterfactual + a * (image - counterfactual)
                                                             for a in alphas]),
        monotone=True, spearman=1.0, crossing_alpha=shift if crossing else None,
        maps={k: v for k, v in maps.items() if k in map_names}, steps_used=20, loss_curve=[1.0, 0.5],
    )


def corner_map(size: int = SIZE) -> np.ndarray:
    """A map [1, S, S] whose mass sits in the top-left corner (where burned-in markers live)."""
    m = np.zeros((1, size, size), dtype=np.float32)
    m[0, 1:5, 1:5] = 1.0
    return m


def centre_map(size: int = SIZE) -> np.ndarray:
    """A map [1, S, S] whose mass sits in the middle of the image."""
    m = np.zeros((1, size, size), dtype=np.float32)
    m[0, 12:20, 12:20] = 1.0
    return m


def write_results(root: str, *, kinds: Sequence[str], bundle_ids: Sequence[str] | None = None,
                  errors: int = 1, lungs: bool = False, markers: bool = False) -> pa.Table:
    """Results rows (DESIGN.md contract) for images of `kinds` ("corner": the diff map looks at a corner,
    anything else: at the centre) plus `errors` error rows; map PNGs are written under `root`/artifacts.
    `lungs` adds a lung_mask column (a centre square), `markers` a shortcut_mask (the corner, on "corner" rows)."""
    rows: list[dict[str, Any]] = []
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    lung_mask = np.zeros((SIZE, SIZE), dtype=bool)
    lung_mask[6:26, 6:26] = True
    for i, kind in enumerate(kinds):
        image_id = f"{kind}-{i}"
        art = storage.join(root, "artifacts", image_id)
        storage.write_bytes(storage.join(art, "diff.png"),
                            png_bytes(corner_map() if kind == "corner" else centre_map(), kind="map"))
        storage.write_bytes(storage.join(art, "gradcam.png"), png_bytes(centre_map(), kind="map"))
        probs = [0.05, 0.2, 0.6, 0.8, 0.9] if i % 2 else [0.01, 0.02, 0.05, 0.1, 0.3]
        row = {
            "image_id": image_id, "label": i % 2, "status": "ok", "error": None,
            "bundle_id": bundle_ids[i] if bundle_ids else "bundle-a",
            "p_input": probs[-1], "p_reconstruction": probs[-1], "p_counterfactual": probs[0],
            "recon_mse": 0.01, "recon_ssim": 0.9, "traversal_alphas": alphas, "traversal_probs": probs,
            "monotone": True, "spearman": 1.0, "crossing_alpha": 0.4 if i % 2 else None,
            "uri_figure": storage.join(art, "figure.png"), "uri_diff": storage.join(art, "diff.png"),
            "uri_gradcam": storage.join(art, "gradcam.png"),
        }
        if lungs:
            row["lung_mask"] = encode_png(lung_mask)
        if markers:  # the "corner" images carry a burned-in marker exactly where their diff map looks
            row["shortcut_mask"] = encode_png(corner_map()[0] > 0 if kind == "corner" else np.zeros((SIZE, SIZE), bool))
        rows.append(row)
    for j in range(errors):
        rows.append({"image_id": f"broken-{j}", "label": 1, "status": "error", "bundle_id": "bundle-a",
                     "error": f"cannot decode image (3 bytes, starting b'xyz'): broken {j}"})
    return pa.Table.from_pylist(rows)
