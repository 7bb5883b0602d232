"""The trial's latent probe reads the latents invert is optimising, without Ray."""

from __future__ import annotations

import dataclasses

import torch

from raygan.bundle import load_bundle
from raygan.explain.inversion import invert
from raygan.tune.trial import LatentProbe, best_restart


def test_probe_sees_the_latents_invert_returns(tiny_bundle: str) -> None:
    bundle = load_bundle(tiny_bundle)
    g, c = bundle.generator, bundle.classifier
    images = torch.rand(3, 1, 32, 32) * 2 - 1  # [N, C, S, S]
    config = dataclasses.replace(bundle.inversion, steps=6)
    probe = LatentProbe(rows=3, z1_dim=bundle.gan.z1_dim, z2_dim=bundle.gan.z2_dim)
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    with probe.attached():
        result = invert(g, c, images, config=config, keys=["a", "b", "c"],
                        callback=lambda step, _loss: seen.__setitem__(step, probe.latents()), callback_every=2)
    assert sorted(seen) == [2, 4, 6]
    assert torch.equal(seen[6][0], result.z1) and torch.equal(seen[6][1], result.z2)
    assert not torch.equal(seen[2][0], seen[6][0])  # a copy per report, not a live view
    assert probe.optimiser is None  # detached after the block


def test_best_restart_picks_invert_s_choice(tiny_bundle: str) -> None:
    bundle = load_bundle(tiny_bundle)
    g, c = bundle.generator, bundle.classifier
    images = torch.rand(2, 1, 32, 32) * 2 - 1
    config = dataclasses.replace(bundle.inversion, steps=4, restarts=3)
    probe = LatentProbe(rows=6, z1_dim=bundle.gan.z1_dim, z2_dim=bundle.gan.z2_dim)
    picked: list[tuple[torch.Tensor, torch.Tensor]] = []
    with probe.attached():
        result = invert(g, c, images, config=config, keys=["a", "b"], callback_every=4,
                        callback=lambda _s, _l: picked.append(
                            best_restart(g, c, images, *probe.latents(), config=config)))
    assert torch.allclose(picked[-1][0], result.z1) and torch.allclose(picked[-1][1], result.z2)
