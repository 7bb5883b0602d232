"""The shortcut audit on users' data: reliance by intervention, each map's verdict (mass or signed net share)."""

from __future__ import annotations

import torch

from raygan.fidelity.audit import audit_regions


def test_a_signed_map_is_judged_by_its_net_share() -> None:
    """The classifier ignores the corner; a map whose magnitude sits there but whose signs cancel says
    "does not" from its signed form, and "relies" from its magnitude alone."""
    torch.manual_seed(0)
    n, size = 12, 16
    images = torch.rand(n, 1, size, size) * 2 - 1
    labels = torch.tensor([1, 0] * (n // 2))
    images[labels == 1, :, 6:10, 6:10] = 1.0  # what the classifier reads: the centre
    images[labels == 0, :, 6:10, 6:10] = -1.0  # so it calls exactly the six positives positive

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(8 * x[:, :, 6:10, 6:10].mean(dim=(1, 2, 3)))

    corner = torch.zeros(n, 1, size, size, dtype=torch.bool)
    corner[..., 0:3, 0:3] = True
    magnitude = torch.full((n, 1, size, size), 0.01)
    magnitude[..., 0:3, 0:3] = 1.0
    signed = magnitude.clone()
    signed[::4, :, 0:3, 0:3] *= -1  # every other positive (rows 0, 4, 8 of 0, 2, ..., 10): the corner's evidence points the other way
    plain = audit_regions(predict, images, {"swap": magnitude}, {"corner": corner}, labels=labels)
    judged = audit_regions(predict, images, {"swap": magnitude}, {"corner": corner}, labels=labels,
                           signed={"swap": signed})
    assert plain[0].truth == "does not" and judged[0].truth == "does not"
    assert plain[0].maps["swap"].verdict == "relies" and plain[0].maps["swap"].net is None
    v = judged[0].maps["swap"]
    assert v.verdict == "does not" and v.agrees and abs(v.net) < 0.05
    assert v.mass == plain[0].maps["swap"].mass  # the map shown is the same; only what the verdict reads differs
