"""Classifier architectures raygan can train: the paper's VGG16 (with batch norm), a small CNN, a max-pooling CNN (the judge).

Both take `channels` x `image_size`^2 inputs and return 2 logits (index 1 = positive class).
They are also the factories that a classifier spec of format "factory" names
(`raygan.models.classifier:vgg16_bn`), so raygan-trained classifiers load like a user's own.
"""

from __future__ import annotations

from torch import nn

from raygan.config import ClassifierArch


def vgg16_bn(*, image_size: int = 128, channels: int = 1, num_classes: int = 2) -> nn.Module:
    """VGG16 with batch norm from scratch (ImageNet weights cannot be downloaded here) and the
    authors' MLP head 4096 -> 1024 -> 256 -> 64 -> classes on the flattened 512 x 4 x 4 features."""
    from torchvision.models import vgg16_bn as tv_vgg16_bn

    model = tv_vgg16_bn(weights=None, num_classes=num_classes)
    model.features[0] = nn.Conv2d(channels, 64, kernel_size=3, padding=1)
    # 128 px -> 4x4 after five poolings; pooling to 4x4 keeps other sizes working too.
    model.avgpool = nn.AdaptiveAvgPool2d((4, 4))
    model.classifier = nn.Sequential(
        nn.Linear(512 * 16, 4096), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(4096, 1024), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(1024, 256), nn.ReLU(True),
        nn.Linear(256, 64), nn.ReLU(True),
        nn.Linear(64, num_classes),
    )
    del image_size  # any size >= 32 works; kept for a uniform factory signature
    return model


def small_cnn(*, image_size: int = 64, channels: int = 1, num_classes: int = 2) -> nn.Module:
    """Four conv blocks (16 -> 128 channels) and global pooling: trains in minutes on a CPU."""
    layers: list[nn.Module] = []
    cin = channels
    for width in (16, 32, 64, 128):
        layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True), nn.MaxPool2d(2)]
        cin = width
    del image_size
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(128, 64),
        nn.ReLU(True), nn.Linear(64, num_classes),
    )


def max_cnn(*, image_size: int = 64, channels: int = 1, num_classes: int = 2) -> nn.Module:
    """Three conv blocks (16 -> 48 -> 96 channels), global max pooling and a linear head.

    The independent judge that validity is checked with: another architecture (fewer, wider blocks;
    max instead of average pooling; no MLP head) and another seed, trained on the same split with
    small_cnn's recipe at about its cost, so that a counterfactual is not called valid only by the
    classifier it was optimised against. (A small ResNet, tried first, stayed at chance on the
    phantoms' lesions.)
    """
    layers: list[nn.Module] = []
    cin = channels
    for width in (16, 48, 96):
        layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True), nn.MaxPool2d(2)]
        cin = width
    del image_size
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))


FACTORIES = {"vgg16_bn": vgg16_bn, "small_cnn": small_cnn, "max_cnn": max_cnn}


def build_classifier(arch: ClassifierArch, *, image_size: int, channels: int = 1) -> nn.Module:
    """A freshly initialised classifier of family `arch` returning 2 logits."""
    if arch not in FACTORIES:
        raise ValueError(f"unknown classifier arch {arch!r}; choose one of {sorted(FACTORIES)}")
    return FACTORIES[arch](image_size=image_size, channels=channels)


def factory_path(arch: ClassifierArch) -> str:
    """The "package.module:function" a classifier spec uses to rebuild `arch`."""
    return f"{__name__}:{FACTORIES[arch].__name__}"


__all__ = ["FACTORIES", "build_classifier", "factory_path", "max_cnn", "small_cnn", "vgg16_bn"]
