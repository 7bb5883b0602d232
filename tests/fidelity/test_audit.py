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


def test_audit_shards_recomputes_the_signed_swap_map_from_stored_counterfactuals(tmp_path) -> None:
    """`raygan report`'s audit reads the signed swap map (from the stored counterfactuals) as the benchmark
    does; without counterfactuals, and for the traversal attribution (its frames are not stored), the mass."""
    import math

    from bundle_helpers import save_tiny_bundle

    from raygan.bundle import load_bundle
    from raygan.data.phantoms import PhantomConfig, write_phantoms
    from raygan.data.shards import decode_rows, read_table
    from raygan.fidelity.audit import audit_shards

    bundle = load_bundle(save_tiny_bundle(tmp_path, steps=1))
    size, channels = bundle.gan.image_size, bundle.gan.channels
    data = str(tmp_path / "phantoms")
    write_phantoms(PhantomConfig(n=12, size=size, seed=0, shortcut_given_positive=1.0, shortcut_given_negative=0.0), data)
    table = read_table(data)
    ids = [str(i) for i in table.column("image_id").to_pylist()]
    torch.manual_seed(1)
    maps = {i: {"swap": torch.rand(size, size).numpy(), "path": torch.rand(size, size).numpy()} for i in ids}
    counterfactuals = {i: torch.rand(channels, size, size) * 2 - 1 for i in ids}
    images = decode_rows(table, size=size, channels=channels).images
    with torch.no_grad():  # make the untrained classifier call half the images positive, none of them near 0.5
        p = bundle.classifier.p_positive(images).double()
        odds = torch.log(p / (1 - p))  # [N]; an untrained net's log-odds differ by little from image to image
        middle = float(odds.sort().values[len(ids) // 2 - 1:len(ids) // 2 + 1].mean())
        scale = 2.0 / float((odds - middle).abs().min())  # every call at least 2 log-odds from the threshold
        last = [m for m in bundle.classifier.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        assert last.out_features == 2  # two logits: scaling both scales the log-odds
        last.weight.mul_(scale)
        last.bias.mul_(scale)
        last.bias[bundle.classifier.positive_index] -= scale * middle

    def run(**kwargs):
        return {a.region: a for a in audit_shards(bundle.classifier, table, maps, size=size, channels=channels, **kwargs)}

    plain, judged = run(), run(counterfactuals=counterfactuals)
    assert set(plain) == set(judged) and "border band" in judged
    assert judged["border band"].reliance.count > 0  # the untrained classifier calls some images positive
    for region, a in judged.items():
        swap = a.maps["swap"]
        assert swap.net is not None and (math.isnan(swap.net) or -1.0 <= swap.net <= 1.0), region  # nan: no carrier
        assert a.maps["path"].net is None and plain[region].maps["swap"].net is None
        assert swap.mass == plain[region].maps["swap"].mass  # the map shown is the stored one either way
    with torch.no_grad():
        called = (bundle.classifier.p_positive(images) > 0.5).tolist()
    assert sum(called) == len(ids) // 2
    only_called = {i: v for i, v, c in zip(ids, counterfactuals.values(), called, strict=True) if c}
    again = run(counterfactuals=only_called)  # only the intervened rows' signed forms are computed and read
    assert all(again[r].maps["swap"].net == a.maps["swap"].net or math.isnan(a.maps["swap"].net)
               for r, a in judged.items())
    missing = next(iter(only_called))  # an intervened row without a counterfactual: no signed form at all
    partial = {i: v for i, v in counterfactuals.items() if i != missing}
    assert all(a.maps["swap"].net is None for a in run(counterfactuals=partial).values())
