import math

import pytest
import torch

from raygan.metrics.mass import border_mass, border_region, shortcut_mass, outside_lung_mass


def test_shortcut_mass_is_one_when_the_map_is_the_marker():
    markers = torch.zeros(3, 1, 16, 16, dtype=torch.bool)
    markers[:, :, 1:4, 1:4] = True
    markers[2] = False  # no marker: not counted
    result = shortcut_mass(markers.float(), markers)
    assert result.value == 1.0 and result.count == 2 and result.chance == pytest.approx(9 / 256)
    uniform = shortcut_mass(torch.ones(3, 1, 16, 16), markers)
    assert uniform.value == pytest.approx(9 / 256)


def test_outside_lung_and_border():
    lungs = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    lungs[..., 2:6, 2:6] = True
    maps = torch.zeros(1, 1, 8, 8)
    maps[..., 0, 0] = 3.0  # corner, outside the lung
    maps[..., 3, 3] = 1.0  # inside the lung
    assert outside_lung_mass(maps, lungs).value == pytest.approx(0.75)
    assert border_mass(maps, margin=1).value == pytest.approx(0.75)
    assert border_mass(maps, margin=1, corners=True).value == pytest.approx(0.75)
    assert border_region(8, 8, margin=2).sum() == 64 - 16
    assert border_region(8, 8, margin=2, corners=True).sum() == 16
    assert math.isnan(border_mass(torch.zeros(1, 1, 8, 8), margin=1).value)  # no mass: not counted


def test_net_share_counts_evidence_against_the_target_as_negative():
    from raygan.metrics.mass import net_share_inside

    region = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    region[..., 0:2, 0:2] = True
    signed = torch.zeros(2, 1, 8, 8)
    signed[0, 0, 0, 0], signed[0, 0, 5, 5] = 1.0, 1.0  # half its magnitude for the target in the region
    signed[1, 0, 0, 0], signed[1, 0, 5, 5] = -1.0, 1.0  # the same magnitude against it
    net = net_share_inside(signed, region)
    assert net.value == pytest.approx(0.0) and net.count == 2 and net.chance == pytest.approx(4 / 64)
    assert shortcut_mass(signed.abs(), region).value == pytest.approx(0.5)  # the magnitudes alone: half
