"""Shortcut audit on users' data: for each region that could carry a shortcut, does the classifier
rely on it (measured by intervention), and does each map say so?

Regions: every `*_mask` column the input shards provide (a lesion mask, a lung mask, a burned-in
marker's mask, ...) and a built-in border band (the outer `BORDER_FRACTION` of the side, where
collimation edges, text and markers sit on real radiographs). Without twins, the intervention is
the region of each image the classifier calls positive replaced by the same region of an image
of the other class (labelled negative; called negative when there are no labels), several donors
per image: p(x) - p(x with the region swapped) is the reliance on whatever the region holds. Each
map's verdict uses the benchmark's rule (`raygan.fidelity.verdict`: the odds of the map's share on the
region >= RATIO x the odds of the region's area share; the share is the net share of the map's signed
form where one is given, the mass otherwise), so a user reads, per region, what the classifier relies
on beside what each map claims.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from raygan.fidelity.verdict import RATIO, Verdict, truth, verdict
from raygan.metrics.mass import border_region, mass_inside, net_share_inside
from raygan.metrics.reliance import Reliance, reliance

BORDER_FRACTION = 0.1  # the built-in border band: this share of the side on each edge
DONORS = 4  # donor images per intervened image (their results are averaged)


@dataclass(frozen=True)
class MapVerdict:
    """What one map says about one region."""

    mass: float  # mean share of the map's mass inside the region (over the intervened images)
    chance: float  # mean area share of the region: a uniform map's mass
    verdict: Verdict  # "relies" when the share's odds >= ratio x chance's, else "does not"
    agrees: bool | None  # the verdict matches the measured truth (None: the truth is unscored)
    net: float | None = None  # mean net share of the map's signed form in the region, what the verdict read (None: no signed form; the mass was read)


@dataclass(frozen=True)
class RegionAudit:
    """One region: the classifier's measured reliance on it and every map's verdict."""

    region: str  # the mask column's name, or "border band"
    reliance: Reliance  # p(x) - p(x with the region from other-class images), over positive calls carrying it
    truth: Verdict  # "relies" (>= 0.3), "does not" (<= 0.05) or "unscored"
    maps: dict[str, MapVerdict]  # map name -> its verdict
    ratio: float  # the verdict rule's mass-over-chance ratio


def swap_region(images: torch.Tensor, regions: torch.Tensor, donors: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """images [N, C, S, S] with each image's region [N, 1, S, S] taken from donors[picks] ([M, ...], picks [N])."""
    assert images.ndim == 4 and regions.shape == (images.shape[0], 1, *images.shape[2:]), (images.shape, regions.shape)
    assert picks.shape == (images.shape[0],), picks.shape  # [N]
    return torch.where(regions.bool(), donors[picks].to(images.dtype), images)


@torch.no_grad()
def region_reliance(
    predict: object,
    images: torch.Tensor,
    regions: torch.Tensor,
    donors: torch.Tensor,
    *,
    donors_per_image: int = DONORS,
    seed: int = 0,
) -> tuple[Reliance, torch.Tensor]:
    """(Reliance over the images whose region is non-empty, [N] bool carriers); `predict` maps images to p [N].

    Each image is intervened `donors_per_image` times with donors drawn at random (seeded); the
    intervened probability is the mean over donors, so one odd donor does not decide.
    """
    assert callable(predict)
    n = images.shape[0]
    carriers = regions.flatten(1).any(1)  # [N]
    if n == 0 or donors.shape[0] == 0:
        return reliance(torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.bool)), carriers
    rng = torch.Generator().manual_seed(seed)
    p_x = predict(images).double().cpu()
    swapped = torch.zeros(n, dtype=torch.float64)
    for _ in range(donors_per_image):
        picks = torch.randint(0, donors.shape[0], (n,), generator=rng)
        swapped += predict(swap_region(images, regions, donors, picks)).double().cpu()
    return reliance(p_x, swapped / donors_per_image, carriers), carriers


def audit_regions(
    predict: object,
    images: torch.Tensor,
    maps: Mapping[str, torch.Tensor],
    regions: Mapping[str, torch.Tensor],
    *,
    labels: torch.Tensor | None = None,
    ratio: float = RATIO,
    seed: int = 0,
    signed: Mapping[str, torch.Tensor] | None = None,
) -> list[RegionAudit]:
    """Audit every region ([N, 1, S, S] bool each) of images [N, C, S, S] against every map ([N, 1, S, S]).

    Intervened images: those the classifier calls positive; donors: images labelled 0 (`labels` [N],
    -1 = unlabelled), or called negative when no image is labelled. `signed`: map name -> the signed
    form of that map ([N, 1, S, S]); a map that has one is judged by its net share in the region.
    """
    assert callable(predict)
    p = predict(images).double().cpu()
    positive = p > 0.5
    labelled = labels is not None and bool((labels >= 0).any())
    negative = (labels == 0) if labelled else ~positive  # type: ignore[operator]
    out = []
    for name, region in regions.items():
        region = region.bool()
        rel, carriers = region_reliance(predict, images[positive], region[positive], images[negative], seed=seed)
        chosen = positive.clone()
        chosen[positive] = carriers
        verdicts = {}
        gt = truth(rel.value)
        for map_name, m in maps.items():
            mass = mass_inside(m[chosen], region[chosen])
            net = None
            read = mass
            if signed is not None and map_name in signed:
                read = net_share_inside(signed[map_name][chosen], region[chosen])
                net = read.value
            v = verdict(read.value, read.chance, ratio=ratio)
            verdicts[map_name] = MapVerdict(mass=mass.value, chance=mass.chance, verdict=v, net=net,
                                            agrees=None if gt == "unscored" or v == "unscored" else v == gt)
        out.append(RegionAudit(region=name, reliance=rel, truth=gt, maps=verdicts, ratio=ratio))
    return out


def audit_shards(
    classifier: object,
    input_table: object,
    maps: Mapping[str, Mapping[str, object]],
    *,
    size: int,
    channels: int,
    counterfactuals: Mapping[str, torch.Tensor] | None = None,
    limit: int = 2000,
    seed: int = 0,
) -> list[RegionAudit]:
    """The audit of explained input rows: `maps` is image_id -> map name -> map [H, W] (uint8 or float in
    [0, 1], e.g. read back from results artifacts); regions are the table's `*_mask` columns and the border
    band. At most `limit` rows (the first ones with maps) are intervened on.

    The verdicts read the signed forms the benchmark reads where they can be recomputed: the swap map's
    from `counterfactuals` (image_id -> G(z1, 0) [C, S, S] in [-1, 1], e.g. the stored counterfactual PNGs;
    used when every audited row has one) and IG's from the classifier (when captum is installed). The
    traversal attribution needs the traversal's frames, which results do not keep: its verdict reads its mass."""
    import numpy as np
    import torch.nn.functional as F

    from raygan.data.codec import decode_image
    from raygan.data.shards import decode_rows

    table = input_table
    ids = [str(i) for i in table.column("image_id").to_pylist()]  # type: ignore[attr-defined]
    keep = [i for i, image_id in enumerate(ids) if image_id in maps][:limit]
    if not keep:
        return []
    batch = decode_rows(table.take(keep), size=size, channels=channels)  # type: ignore[attr-defined]
    names = sorted({n for image_id in batch.image_ids for n in maps[image_id]})

    def as_map(values: object) -> torch.Tensor:
        arr = np.asarray(values, dtype=np.float32)
        arr = arr / 255.0 if arr.max(initial=0.0) > 1.0 else arr
        t = torch.from_numpy(arr).view(1, 1, *arr.shape[-2:])
        return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0] if t.shape[-1] != size else t[0]

    stacked = {n: torch.stack([as_map(maps[i][n]) if n in maps[i] else torch.zeros(1, size, size)
                               for i in batch.image_ids]) for n in names}
    regions: dict[str, torch.Tensor] = {}
    for column, values in batch.passthrough.items():
        if column == "mask" or column.endswith("_mask"):  # the lesion mask column is plain "mask"
            regions[column] = torch.stack([
                decode_image(bytes(v), size=size, channels=1) > 0 if v is not None else torch.zeros(1, size, size,
                                                                                                    dtype=torch.bool)
                for v in values])
    regions["border band"] = border_band(size).expand(len(batch.image_ids), -1, -1, -1)
    device = classifier.mean.device  # type: ignore[attr-defined]

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([classifier.p_positive(x[i:i + 256].to(device)).cpu()  # type: ignore[attr-defined]
                              for i in range(0, x.shape[0], 256)])

    # Only the positive calls are intervened on (`audit_regions`), so only theirs are computed (the swap
    # map is about 225 forward passes an image); the other rows' signed forms are never read.
    positive = predict(batch.images) > 0.5
    ids = [i for i, keep in zip(batch.image_ids, positive.tolist(), strict=True) if keep]
    signed = {}
    for name, form in _signed_forms(classifier, batch.images[positive], ids, names, counterfactuals).items():
        signed[name] = torch.zeros(len(batch.image_ids), *form.shape[1:])
        signed[name][positive] = form
    return audit_regions(predict, batch.images, stacked, regions, labels=batch.labels, seed=seed, signed=signed)


def _signed_forms(classifier: object, images: torch.Tensor, image_ids: list[str], names: list[str],
                  counterfactuals: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The signed forms of the stored maps that can be recomputed from what the audit has (see `audit_shards`)."""
    from raygan.explain.attribution import SWAP_MAP, signed_attributions, unavailable_maps

    if not image_ids:  # no positive call: nothing is intervened on
        return {}
    have_cf = (SWAP_MAP in names and counterfactuals is not None
               and all(i in counterfactuals for i in image_ids))
    cf = torch.stack([counterfactuals[i] for i in image_ids]) if have_cf else None  # type: ignore[index]
    ig = "ig" in names and "ig" not in unavailable_maps(classifier)  # type: ignore[arg-type]
    if cf is None and not ig:
        return {}
    return signed_attributions(classifier, images, counterfactuals=cf, ig=ig)  # type: ignore[arg-type]


def border_band(size: int, *, fraction: float = BORDER_FRACTION) -> torch.Tensor:
    """[1, S, S] bool: the outer `fraction` of the side on every edge."""
    return border_region(size, size, margin=max(1, round(fraction * size))).unsqueeze(0)


def describe(audits: list[RegionAudit]) -> list[str]:
    """One line per region and map, for terminals and Markdown lists."""
    lines = []
    for a in audits:
        rel = "n/a" if math.isnan(a.reliance.value) else f"{a.reliance.value:.3f}"
        lines.append(f"{a.region}: reliance {rel} over {a.reliance.count} positive calls -> truth: {a.truth}")
        for name, v in a.maps.items():
            mass = "n/a" if math.isnan(v.mass) else f"{v.mass:.3f}"
            agree = "" if v.agrees is None else (" (right)" if v.agrees else " (WRONG)")
            net = "" if v.net is None or math.isnan(v.net) else f", net share {v.net:+.3f}"
            lines.append(f"    {name}: mass {mass}{net} (chance {v.chance:.3f}) -> {v.verdict}{agree}")
    return lines


__all__ = ["BORDER_FRACTION", "MapVerdict", "RegionAudit", "audit_regions", "audit_shards", "border_band", "describe",
           "region_reliance", "swap_region"]
