"""The Ray-free epoch functions the Train loops and the study share: batching, the classifier and GAN epochs."""

from __future__ import annotations

import pytest
import torch

from raygan.config import preset
from raygan.models import FrozenClassifier, build_classifier, build_discriminator, build_generator
from raygan.models.classifier import factory_path
from raygan.models.frozen import ClassifierSpec
from raygan.train.epoch import batch_indices, classifier_epoch, epoch_seed, gan_epoch
from raygan.train.step import GanModels, make_optimizers

TINY = preset("tiny")


def test_batch_indices_shuffle_every_row_once_and_repeat_with_the_seed() -> None:
    batches = list(batch_indices(10, batch_size=4, seed=3, drop_last=False))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert torch.cat(batches).tolist() != list(range(10))  # shuffled
    again = list(batch_indices(10, batch_size=4, seed=3, drop_last=False))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    dropped = list(batch_indices(10, batch_size=4, seed=3))
    assert [b.shape[0] for b in dropped] == [4, 4]  # drop_last: one shape for every step
    with pytest.raises(ValueError, match="batch_size"):
        list(batch_indices(10, batch_size=0, seed=0))


def test_epoch_seed_differs_per_rank_and_epoch() -> None:
    seeds = {epoch_seed(0, rank=r, epoch=e) for r in range(3) for e in range(3)}
    assert len(seeds) == 9 and epoch_seed(5, rank=1, epoch=2) == epoch_seed(5, rank=1, epoch=2)


def test_classifier_epoch_trains_and_counts() -> None:
    torch.manual_seed(0)
    model = build_classifier("small_cnn", image_size=32)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, labels = torch.rand(12, 1, 32, 32) * 2 - 1, torch.tensor([0, 1] * 6)
    batches = ((images[i], labels[i]) for i in batch_indices(12, batch_size=4, seed=0))
    totals = classifier_epoch(model, optimizer, batches, rng=torch.Generator().manual_seed(0))
    assert totals.shape == (3,) and totals[2] == 12 and 0 <= totals[1] <= 12 and totals[0] > 0
    assert model.training
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_gan_epoch_runs_one_step_per_batch_and_leaves_the_classifier_frozen() -> None:
    torch.manual_seed(0)
    spec = ClassifierSpec(format="factory", weights="w.pt", factory=factory_path("small_cnn"),
                          factory_kwargs={"image_size": 32}, size=32)
    classifier = FrozenClassifier(build_classifier("small_cnn", image_size=32), spec)
    frozen = [p.detach().clone() for p in classifier.parameters()]
    models = GanModels(build_generator(TINY.gan), build_discriminator(TINY.gan), classifier)
    opt_g, opt_d = make_optimizers(models, TINY.train)
    real = torch.rand(20, 1, 32, 32) * 2 - 1
    done = gan_epoch(models, opt_g, opt_d, (real[i] for i in batch_indices(20, batch_size=8, seed=0)),
                     train=TINY.train, rng=torch.Generator().manual_seed(1))
    assert done.means.steps == 2 and float(done.images) == 16
    means = {k: float(v) for k, v in done.means.means().items()}
    assert set(means) == {"d_loss", "g_adv", "g_class", "d_real", "d_fake"} and means["d_loss"] > 0
    assert all(torch.equal(a, b) for a, b in zip(frozen, classifier.parameters()))
