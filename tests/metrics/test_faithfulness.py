import math

import torch

from raygan.metrics.faithfulness import deletion_insertion, pixel_ranks

REGION = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
REGION[..., 4:10, 5:11] = True


def predict(images: torch.Tensor) -> torch.Tensor:
    """A constructed classifier: p = mean intensity (in [0, 1]) inside REGION."""
    return ((images + 1) / 2 * REGION).sum(dim=(1, 2, 3)) / REGION.sum()


def test_the_right_map_deletes_faster_than_the_inverted_map():
    # A bright patch on a dark background: both baselines (black, blurred) dim the patch.
    noise = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    images = torch.where(REGION, 0.6 + 0.4 * noise, -1 + 0.2 * noise)
    right = REGION.float().expand(5, 1, 16, 16)
    for baseline in ("black", "blur"):
        good = deletion_insertion(predict, images, right, steps=8, baseline=baseline, batch_size=20)
        bad = deletion_insertion(predict, images, 1 - right, steps=8, baseline=baseline, batch_size=20)
        assert good.deletion_auc < bad.deletion_auc
        assert good.insertion_auc > bad.insertion_auc
        assert good.count == 5 and len(good.deletion_curve) == 9
        # Step 0 is the untouched image; the last step is the baseline everywhere.
        assert math.isclose(good.deletion_curve[0], float(predict(images).mean()), rel_tol=1e-5)
        assert math.isclose(good.deletion_curve[-1], good.insertion_curve[0], rel_tol=1e-5)


def test_ranks_put_salient_pixels_first_and_break_ties():
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 3, 3] = 1.0
    ranks = pixel_ranks(maps)
    assert ranks[0, 15] == 0
    assert sorted(ranks[0].tolist()) == list(range(16))
