"""Attribution maps: shapes and ranges, and Grad-CAM / IG on a case whose answer is known."""

from __future__ import annotations

import pytest
import torch
from explain_helpers import SIZE, identity_spec
from torch import nn

from raygan.explain.attribution import (
    MAP_NAMES, difference_map, gradcam, integrated_gradients, normalise, swap_attribution,
)
from raygan.models import FrozenClassifier


def _check_map(m: torch.Tensor, n: int) -> None:
    assert m.shape == (n, 1, SIZE, SIZE)
    assert m.min() >= 0 and m.max() <= 1
    assert torch.allclose(m.flatten(1).amax(1), torch.ones(n)) or (m == 0).any()


def test_map_names():
    assert MAP_NAMES == ("diff", "gradcam", "ig")


def test_difference_map():
    a = torch.zeros(2, 1, SIZE, SIZE)
    b = a.clone()
    b[0, :, 4:8, 4:8] = 0.5
    d = difference_map(a, b)
    assert d.shape == (2, 1, SIZE, SIZE)
    assert d[0, 0, 4:8, 4:8].eq(1).all() and d[0].sum() == 16
    assert d[1].eq(0).all()  # identical images: an all-zero map, not nan


def test_normalise_keeps_zero_maps_zero():
    m = normalise(torch.stack([torch.zeros(1, 4, 4), torch.full((1, 4, 4), 3.0)]))
    assert m[0].eq(0).all() and m[1].eq(1).all()


def test_maps_on_a_real_network(tiny_classifier, images):
    _check_map(gradcam(tiny_classifier, images), 5)
    _check_map(integrated_gradients(tiny_classifier, images, steps=4), 5)


class BrightRegionNet(nn.Module):
    """Pools 4x, then a 1x1 conv splits bright (channel 0) from dark (channel 1) evidence; only
    bright evidence raises the positive logit. Grad-CAM on that conv must point at bright areas."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(4)
        self.conv = nn.Conv2d(1, 2, 1)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.conv.bias.zero_()
            self.head.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(self.pool(x))).mean(dim=(2, 3)))


def test_gradcam_and_ig_highlight_the_evidence():
    classifier = FrozenClassifier(BrightRegionNet(), identity_spec())
    x = torch.full((1, 1, SIZE, SIZE), -1.0)
    x[:, :, 4:16, 4:16] = 1.0  # the bright (positive) evidence, top left
    x[:, :, 20:28, 20:28] = -0.9  # a dark blob the classifier ignores
    region = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    region[4:16, 4:16] = True
    for m in (gradcam(classifier, x), integrated_gradients(classifier, x, steps=8)):
        m = m[0, 0]
        assert float(m[region].mean()) > 0.5
        assert float(m[~region].mean()) < 0.2 * float(m[region].mean())


def test_gradcam_layer_is_chosen_per_architecture(tmp_path):
    import dataclasses

    import torchvision

    from raygan.explain.attribution import GradCamUnavailable, gradcam_layer, unavailable_maps
    from raygan.models import ClassifierSpec, build_classifier, load_classifier, save_classifier

    resnet_spec = ClassifierSpec(format="torchvision", arch="resnet18", weights="w.pt", size=64, channels=3)
    resnet = FrozenClassifier(torchvision.models.resnet18(weights=None, num_classes=2), resnet_spec)
    assert gradcam_layer(resnet)[0] == "layer4"  # the last residual stage, after the skip connection
    cam = gradcam(resnet, torch.rand(2, 3, SIZE, SIZE) * 2 - 1)
    _check_map(cam, 2)
    plain = FrozenClassifier(build_classifier("small_cnn", image_size=SIZE), identity_spec())
    assert gradcam_layer(plain)[0] == "12"  # small_cnn: its last Conv2d (a Sequential's index)
    explicit = FrozenClassifier(resnet.model, dataclasses.replace(resnet_spec, gradcam_layer="layer3"))
    assert gradcam_layer(explicit)[0] == "layer3"
    wrong = FrozenClassifier(resnet.model, dataclasses.replace(resnet_spec, gradcam_layer="layer9"))
    with pytest.raises(GradCamUnavailable, match="layer9"):
        gradcam_layer(wrong)

    spec = ClassifierSpec(format="torchscript", weights="m.ts", size=SIZE)
    save_classifier(build_classifier("small_cnn", image_size=SIZE), tmp_path / "ts", spec=spec)
    scripted = load_classifier(tmp_path / "ts")
    skipped = unavailable_maps(scripted)
    assert list(skipped) == ["gradcam"] and "TorchScript" in skipped["gradcam"]
    _check_map(integrated_gradients(scripted, torch.rand(2, 1, SIZE, SIZE) * 2 - 1, steps=4), 2)  # IG still runs


class CornerMarkerNet(nn.Module):
    """Reads one thing only: how bright a 3x3 corner patch is (a planted shortcut)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        marker = x[:, :, 2:5, 2:5].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(marker), 8.0 * marker], dim=1)


def test_swap_map_points_at_what_the_classifier_reads_not_at_all_the_counterfactual_changes():
    classifier = FrozenClassifier(CornerMarkerNet(), identity_spec())
    x = torch.full((2, 1, SIZE, SIZE), -0.5)
    x[:, :, 2:5, 2:5] = 1.0  # the marker C relies on
    x[:, :, 16:26, 16:26] = 0.5  # a lesion-like blob C ignores
    x[1] += 0.05 * torch.randn(1, SIZE, SIZE)
    counterfactual = torch.full_like(x, -0.5)  # repaints both: the marker and the ignored blob
    marker = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    marker[2:5, 2:5] = True
    swap = swap_attribution(classifier, x, counterfactual)
    _check_map(swap, 2)
    diff = difference_map(x, counterfactual)
    for i in range(2):
        share = float(swap[i, 0][marker].sum() / swap[i, 0].sum())
        assert share > 0.9, share
        assert float(diff[i, 0][marker].sum() / diff[i, 0].sum()) < 0.2  # the plain difference is mostly the blob
    # Per image: the same map alone as in the batch.
    assert torch.allclose(swap_attribution(classifier, x[1:], counterfactual[1:]), swap[1:], atol=1e-5)
    # Nothing C reads changes -> an all-zero map.
    same = x.clone()
    same[:, :, 16:26, 16:26] = -0.5
    assert swap_attribution(classifier, x, same).eq(0).all()


class MarkerWithContextNet(nn.Module):
    """Reads the corner marker for the target when the centre is bright and against it when the centre is dark."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        marker = x[:, :, 2:5, 2:5].mean(dim=(1, 2, 3)) + 0.5  # 0 without the marker (background -0.5)
        centre = torch.sign(x[:, :, 14:18, 14:18].mean(dim=(1, 2, 3)))
        return torch.stack([torch.zeros_like(marker), 2.0 * centre * marker], dim=1)


def test_signed_swap_map_nets_out_a_cue_that_cuts_both_ways():
    """A cue that raises one call and lowers the other is not relied on: the positive swap map gives it a share
    in the first image and none in the second (a positive mean), the signed one a positive and a negative share."""
    classifier = FrozenClassifier(MarkerWithContextNet(), identity_spec())
    x = torch.full((2, 1, SIZE, SIZE), -0.5)
    x[:, :, 2:5, 2:5] = 1.0
    x[0, :, 14:18, 14:18] = 0.5  # bright centre: the marker raises the log-odds
    x[1, :, 14:18, 14:18] = -0.9  # dark centre: it lowers them
    counterfactual = x.clone()
    counterfactual[:, :, 2:5, 2:5] = -0.5  # removes the marker only
    marker = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    marker[2:5, 2:5] = True
    positive = swap_attribution(classifier, x, counterfactual)
    signed = swap_attribution(classifier, x, counterfactual, signed=True)
    _check_map(positive, 2)
    assert signed.shape == (2, 1, SIZE, SIZE) and float(signed.abs().max()) == pytest.approx(1.0)
    share = [float(signed[i, 0][marker].sum() / signed[i, 0].abs().sum()) for i in range(2)]
    assert share[0] == pytest.approx(1.0) and share[1] == pytest.approx(-1.0)
    assert float(positive[0, 0][marker].sum() / positive[0, 0].sum()) == pytest.approx(1.0)
    assert positive[1].eq(0).all()  # the positive map drops the evidence against the target
    # Where every drop is positive the signed map is the positive one.
    assert torch.allclose(swap_attribution(classifier, x[:1], counterfactual[:1], signed=True), positive[:1])


def test_signed_integrated_gradients_keep_the_sign():
    classifier = FrozenClassifier(MarkerWithContextNet(), identity_spec())
    x = torch.full((1, 1, SIZE, SIZE), -0.5)
    x[:, :, 2:5, 2:5] = 1.0
    x[:, :, 14:18, 14:18] = -0.9  # the marker counts against the target
    signed = integrated_gradients(classifier, x, steps=8, signed=True)
    assert float(signed[0, 0, 2:5, 2:5].sum()) < 0 and float(signed.abs().max()) == pytest.approx(1.0)
    assert float(integrated_gradients(classifier, x, steps=8)[0, 0, 2:5, 2:5].sum()) > 0  # the default is |IG|
