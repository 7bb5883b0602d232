"""Where a map puts its mass: on a planted shortcut (marker, stamp), near the border, outside the lungs.

A map that spends its mass on a burned-in shortcut, on the image border or outside the lung
fields exposes a shortcut (DESIGN.md: markers, borders, scanner differences). Every quantity
here is, per image, sum(map * region) / sum(map), averaged over the images counted; `chance` is
the mean region fraction, what a uniform map would score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MapMass:
    """Share of attribution mass inside a region."""

    value: float  # mean over counted images of sum(map in region) / sum(map); nan when none counted
    chance: float  # mean region fraction over the same images: a uniform map's score
    count: int  # images counted: non-empty region and a map with positive mass


def mass_inside(maps: torch.Tensor, regions: torch.Tensor) -> MapMass:
    """Share of the (non-negative) mass of `maps` [N, 1, H, W] inside `regions` [N, 1, H, W] bool."""
    return net_share_inside(maps.detach().float().clamp_min(0), regions)  # no sign: the net share is the mass


@torch.no_grad()
def net_shares(signed: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Per image, the signed sum of `signed` [N, 1, H, W] inside `regions` [N, 1, H, W] bool over the sum of its
    magnitudes -> [N] float64 in [-1, 1] (negative where the region speaks against the target; for a
    non-negative map, its mass share); nan where the region is empty or the map is zero."""
    assert signed.ndim == 4 and signed.shape[1] == 1, signed.shape  # [N, 1, H, W]
    assert regions.shape == signed.shape, (regions.shape, signed.shape)  # [N, 1, H, W]
    m = signed.detach().float().flatten(1)  # [N, P]
    r = regions.bool().flatten(1)  # [N, P]
    total = m.abs().sum(1)
    counted = r.any(1) & (total > 0)
    share = (m * r).sum(1).double() / total.double().clamp_min(1e-30)
    return torch.where(counted, share, torch.full_like(share, math.nan))


@torch.no_grad()
def net_share_inside(signed: torch.Tensor, regions: torch.Tensor) -> MapMass:
    """`net_shares` averaged over the images with a non-empty region and a non-zero map, beside the mean
    area share of the region over the same images."""
    share = net_shares(signed, regions)  # [N]
    counted = ~share.isnan()
    count = int(counted.sum())
    if count == 0:
        return MapMass(value=math.nan, chance=math.nan, count=0)
    chance = regions.bool().flatten(1)[counted].float().mean(1)
    return MapMass(value=float(share[counted].mean()), chance=float(chance.double().mean()), count=count)


def shortcut_mass(maps: torch.Tensor, shortcut_masks: torch.Tensor) -> MapMass:
    """Share of map mass on the planted shortcut (images without one are not counted)."""
    return mass_inside(maps, shortcut_masks)


def outside_lung_mass(maps: torch.Tensor, lung_masks: torch.Tensor) -> MapMass:
    """Share of map mass outside the lung fields `lung_masks` [N, 1, H, W] bool."""
    assert lung_masks.ndim == 4, lung_masks.shape  # [N, 1, H, W]
    return mass_inside(maps, ~lung_masks.bool())


def border_region(height: int, width: int, *, margin: int, corners: bool = False) -> torch.Tensor:
    """[H, W] bool: pixels within `margin` pixels of the border (`corners`: only the four margin x margin corners)."""
    assert margin >= 0, margin
    rows = torch.arange(height)
    cols = torch.arange(width)
    near_row = (rows < margin) | (rows >= height - margin)  # [H]
    near_col = (cols < margin) | (cols >= width - margin)  # [W]
    if corners:
        return near_row[:, None] & near_col[None, :]
    return near_row[:, None] | near_col[None, :]


def border_mass(maps: torch.Tensor, *, margin: int, corners: bool = False) -> MapMass:
    """Share of map mass within `margin` pixels of the image border (or only its corners)."""
    assert maps.ndim == 4 and maps.shape[1] == 1, maps.shape  # [N, 1, H, W]
    region = border_region(maps.shape[-2], maps.shape[-1], margin=margin, corners=corners).to(maps.device)
    return mass_inside(maps, region.expand_as(maps))


__all__ = ["MapMass", "border_mass", "border_region", "mass_inside", "net_share_inside", "net_shares",
           "outside_lung_mass", "shortcut_mass"]
