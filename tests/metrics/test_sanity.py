import torch
import torch.nn.functional as F

from raygan.explain.attribution import gradcam
from raygan.metrics.sanity import model_randomisation, parameterised_layers, randomised_copy
from raygan.models.classifier import small_cnn
from raygan.models.frozen import ClassifierSpec, FrozenClassifier


def _classifier() -> FrozenClassifier:
    torch.manual_seed(0)
    spec = ClassifierSpec(format="factory", weights="w.pt", factory="raygan.models.classifier:small_cnn", size=32)
    return FrozenClassifier(small_cnn(image_size=32), spec)


def edges(_classifier: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """A map that ignores the model: gradient magnitude of the image."""
    dx = F.pad(images[..., :, 1:] - images[..., :, :-1], (0, 1)).abs()
    dy = F.pad(images[..., 1:, :] - images[..., :-1, :], (0, 0, 0, 1)).abs()
    return (dx + dy).mean(1, keepdim=True)


def test_a_map_that_ignores_the_model_stays_identical():
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    result = model_randomisation(_classifier(), images, edges)
    assert result.spearman == 1.0 and abs(result.ssim - 1.0) < 1e-5 and result.count == 4


def test_gradcam_changes_when_the_weights_are_randomised():
    classifier = _classifier()
    before = [p.clone() for p in classifier.parameters()]
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    result = model_randomisation(classifier, images, gradcam, seed=3)
    assert result.count > 0 and result.spearman < 0.9 and result.ssim < 0.9
    assert result.layers == result.total_layers == len(parameterised_layers(classifier))
    assert all(torch.equal(a, b) for a, b in zip(before, classifier.parameters()))  # original untouched


def test_cascade_randomises_only_the_top_layers():
    classifier = _classifier()
    clone = randomised_copy(classifier, layers=2, seed=0)
    layers, cloned = parameterised_layers(classifier), parameterised_layers(clone)
    same = [all(torch.equal(a, b) for a, b in zip(x.parameters(), y.parameters())) for x, y in zip(layers, cloned)]
    assert same == [True] * (len(layers) - 2) + [False, False]
