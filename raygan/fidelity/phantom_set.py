"""A split of one phantom world as tensors: images, their twins and every ground-truth mask.

The fidelity benchmark renders phantoms in memory (no Parquet round trip: PNG is lossless, so
nothing would change) and needs, beside each image, its twins without the shortcut, without the
lesions and without both, and the masks. Splits are the project's 80/10/10 hash of image_id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from raygan.data.phantoms import PhantomConfig, phantom_at, phantom_id
from raygan.data.splits import Split, split_of

CUES = ("shortcut", "lesions", "both")  # what a twin can be without


def _signed(pixels: np.ndarray) -> torch.Tensor:
    """uint8 [N, S, S] -> float32 [N, 1, S, S] in [-1, 1] (the codec's mapping)."""
    return torch.from_numpy(pixels.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)


@dataclass(frozen=True)
class PhantomSet:
    """N phantoms of one split with their twins and masks (images in [-1, 1], masks bool)."""

    image_ids: list[str]  # phantom ids, in index order
    images: torch.Tensor  # [N, 1, S, S]
    twins: dict[str, torch.Tensor]  # cue -> [N, 1, S, S]: the same phantoms without that cue ("shortcut", "lesions", "both")
    labels: torch.Tensor  # [N] int64, y
    lesion_masks: torch.Tensor  # [N, 1, S, S] lesion pixels (the localisation truth)
    shortcut_masks: torch.Tensor  # [N, 1, S, S] shortcut pixels
    lung_masks: torch.Tensor  # [N, 1, S, S] lung fields
    has_lesions: torch.Tensor  # [N] bool
    has_shortcut: torch.Tensor  # [N] bool

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, index: torch.Tensor) -> PhantomSet:
        """The phantoms at `index` ([K] int64 or [N] bool), in that order."""
        idx = index.nonzero().squeeze(1) if index.dtype == torch.bool else index
        ids = [self.image_ids[int(i)] for i in idx]
        return PhantomSet(
            image_ids=ids, images=self.images[idx], twins={k: v[idx] for k, v in self.twins.items()},
            labels=self.labels[idx], lesion_masks=self.lesion_masks[idx], shortcut_masks=self.shortcut_masks[idx],
            lung_masks=self.lung_masks[idx], has_lesions=self.has_lesions[idx], has_shortcut=self.has_shortcut[idx],
        )


def render_split(config: PhantomConfig, split: Split, *, limit: int | None = None, twins: bool = True) -> PhantomSet:
    """The phantoms 0 .. n-1 of `config` whose image_id falls in `split` (at most `limit` of them)."""
    indices = [i for i in range(config.n) if split_of(phantom_id(i)) == split][:limit]
    phantoms = [phantom_at(config, i) for i in indices]
    s = config.size

    def stack(name: str, dtype: type = np.uint8) -> np.ndarray:
        return np.stack([getattr(p, name) for p in phantoms]).astype(dtype) if phantoms else np.zeros((0, s, s), dtype)

    def masks(name: str) -> torch.Tensor:
        return torch.from_numpy(stack(name, bool)).unsqueeze(1)

    images = _signed(stack("image"))
    twin_images = {cue: _signed(stack(name)) for cue, name in
                   (("shortcut", "no_shortcut"), ("lesions", "no_lesions"), ("both", "clean"))} if twins else {}
    return PhantomSet(
        image_ids=[phantom_id(i) for i in indices], images=images, twins=twin_images,
        labels=torch.tensor([p.label for p in phantoms], dtype=torch.int64),
        lesion_masks=masks("mask"), shortcut_masks=masks("shortcut_mask"), lung_masks=masks("lung_mask"),
        has_lesions=torch.tensor([p.lesions for p in phantoms], dtype=torch.bool),
        has_shortcut=torch.tensor([p.shortcut for p in phantoms], dtype=torch.bool),
    )


def stratified(phantoms: PhantomSet, n: int) -> torch.Tensor:
    """[<= n] indices: up to n // 2 phantoms with the shortcut, the rest without, in index order.

    The explained sample of a cell: half of it carries the shortcut, so the shortcut metrics and
    the distractor's (does an explanation point at a shortcut the classifier ignores?) both have
    enough images, whatever the world's cue rates.
    """
    with_s = phantoms.has_shortcut.nonzero().squeeze(1)
    without = (~phantoms.has_shortcut).nonzero().squeeze(1)
    k = min(n // 2, with_s.numel())
    chosen = torch.cat([with_s[:k], without[: n - k]])
    return chosen.sort().values


__all__ = ["CUES", "PhantomSet", "render_split", "stratified"]
