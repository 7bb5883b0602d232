"""Classifier architectures raygan can train: the paper's VGG16 (with batch norm), a small CNN, a small ResNet.

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


class _Residual(nn.Module):
    """conv-bn-relu-conv-bn plus a (1x1-projected) shortcut, then ReLU; stride 2 halves the side."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(True)

    def forward(self, x):  # noqa: ANN001, ANN201 - nn.Module signature
        return self.relu(self.body(x) + self.skip(x))


def small_resnet(*, image_size: int = 64, channels: int = 1, num_classes: int = 2) -> nn.Module:
    """A stem and three residual stages (16 -> 32 -> 64 channels), global pooling, a linear head.

    A second architecture of small_cnn's training cost: the independent judge that validity is
    checked with (another seed and another architecture, trained on the same split), so that a
    counterfactual is not called valid only in the eyes of the classifier it was optimised against.
    """
    del image_size
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(True),
        _Residual(16, 16, 1), _Residual(16, 32, 2), _Residual(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )


FACTORIES = {"vgg16_bn": vgg16_bn, "small_cnn": small_cnn, "small_resnet": small_resnet}


def build_classifier(arch: ClassifierArch, *, image_size: int, channels: int = 1) -> nn.Module:
    """A freshly initialised classifier of family `arch` returning 2 logits."""
    if arch not in FACTORIES:
        raise ValueError(f"unknown classifier arch {arch!r}; choose one of {sorted(FACTORIES)}")
    return FACTORIES[arch](image_size=image_size, channels=channels)


def factory_path(arch: ClassifierArch) -> str:
    """The "package.module:function" a classifier spec uses to rebuild `arch`."""
    return f"{__name__}:{FACTORIES[arch].__name__}"


__all__ = ["FACTORIES", "build_classifier", "factory_path", "small_cnn", "small_resnet", "vgg16_bn"]
