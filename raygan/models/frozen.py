"""The classifier being explained: a spec directory on disk, and the frozen wrapper around it.

A classifier spec is a directory (local or s3) with `classifier.json` plus weights (DESIGN.md,
"Classifier spec"). `FrozenClassifier` maps generator output ([-1, 1], 1 channel, any size) to
what the model expects, never trains, and gives logits, p(positive) and penultimate features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

SPEC_FILE = "classifier.json"


@dataclass(frozen=True)
class ClassifierSpec:
    """How to build, feed and read a classifier (the contents of `classifier.json`)."""

    format: Literal["torchscript", "torchvision", "factory"]  # how the model is rebuilt
    weights: str  # file name of the weights inside the spec directory
    arch: str | None = None  # torchvision model name (format "torchvision"), e.g. "resnet18"
    factory: str | None = None  # "package.module:function" returning an nn.Module (format "factory")
    factory_kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the factory
    num_classes: int = 2  # outputs of the model (format "torchvision")
    size: int = 128  # input side the model expects; generator output is resized to it
    channels: int = 1  # input channels; gray images are repeated to 3 when needed
    mean: tuple[float, ...] = (0.5,)  # per-channel mean applied to images scaled to [0, 1]
    std: tuple[float, ...] = (0.5,)  # per-channel std; (0.5,) and (0.5,) map [0, 1] back to [-1, 1]
    positive_index: int = 1  # output index of the positive class
    output: Literal["logits", "probabilities"] = "logits"  # what the model returns

    def to_json(self) -> dict[str, Any]:
        """The `classifier.json` document (the `input` block grouped as in DESIGN.md)."""
        data = dataclasses.asdict(self)
        data["input"] = {k: data.pop(k) for k in ("size", "channels", "mean", "std")}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClassifierSpec:
        """Parse `classifier.json`, with a clear error for missing or unknown keys."""
        data = dict(data)
        data.update(data.pop("input", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{SPEC_FILE}: unknown keys {unknown}; known: {sorted(known)}")
        for key in ("format", "weights"):
            if key not in data:
                raise ValueError(f"{SPEC_FILE}: missing required key {key!r}")
        for key in ("mean", "std"):
            if key in data:
                data[key] = tuple(float(v) for v in data[key])
        spec = cls(**data)
        if spec.format == "torchvision" and not spec.arch:
            raise ValueError(f"{SPEC_FILE}: format 'torchvision' needs 'arch'")
        if spec.format == "factory" and not spec.factory:
            raise ValueError(f"{SPEC_FILE}: format 'factory' needs 'factory' = 'package.module:function'")
        if spec.format not in ("torchscript", "torchvision", "factory"):
            raise ValueError(f"{SPEC_FILE}: unknown format {spec.format!r}")
        return spec


class FrozenClassifier(nn.Module):
    """A classifier that never trains, fed generator-range images ([-1, 1], 1 channel)."""

    def __init__(self, model: nn.Module, spec: ClassifierSpec) -> None:
        super().__init__()
        self.model = model.eval()
        self.spec = spec
        for param in self.model.parameters():  # (ScriptModules lack requires_grad_)
            param.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> FrozenClassifier:
        # Frozen means frozen: batch-norm statistics and dropout stay in eval mode.
        super().train(False)
        return self

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Map [-1, 1] images [N, C, H, W] to the model's input size, channels and range."""
        assert x.ndim == 4, x.shape  # [N, C, H, W]
        if x.shape[-1] != self.spec.size or x.shape[-2] != self.spec.size:
            x = F.interpolate(x, size=(self.spec.size, self.spec.size), mode="bilinear", align_corners=False, antialias=True)
        if x.shape[1] == 1 and self.spec.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and self.spec.channels == 1:
            x = x.mean(dim=1, keepdim=True)
        return ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, K] (log-probabilities where the model returns probabilities)."""
        out = self.model(self.prepare(x))
        if self.spec.output == "probabilities":
            out = out.clamp_min(1e-7).log()
        return out.float()

    def log_p_positive(self, x: torch.Tensor) -> torch.Tensor:
        """log p(positive | x), [N], numerically stable."""
        return F.log_softmax(self(x), dim=1)[:, self.spec.positive_index]

    def p_positive(self, x: torch.Tensor) -> torch.Tensor:
        """p(positive | x), [N]."""
        return F.softmax(self(x), dim=1)[:, self.spec.positive_index]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [N, F]: the input of the last linear layer (for the Frechet distance)."""
        last = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        if not last:
            raise ValueError("features() needs a model whose last layer is nn.Linear (not available for TorchScript)")
        captured: list[torch.Tensor] = []
        hook = last[-1].register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            self.model(self.prepare(x))
        finally:
            hook.remove()
        return captured[-1].float().flatten(1)

    @property
    def positive_index(self) -> int:
        return self.spec.positive_index


def _build(spec: ClassifierSpec, weights: Path) -> nn.Module:
    """Rebuild the bare model a spec describes and load its weights."""
    if spec.format == "torchscript":
        return torch.jit.load(str(weights), map_location="cpu")
    if spec.format == "torchvision":
        import torchvision

        model = torchvision.models.get_model(spec.arch, weights=None, num_classes=spec.num_classes)
    else:
        module_name, _, func_name = (spec.factory or "").partition(":")
        if not module_name or not func_name:
            raise ValueError(f"{SPEC_FILE}: factory must be 'package.module:function', got {spec.factory!r}")
        model = getattr(importlib.import_module(module_name), func_name)(**spec.factory_kwargs)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model


def load_classifier(uri: str | Path, *, settings: Any = None) -> FrozenClassifier:
    """Load the classifier spec directory at `uri` (local or s3) as a FrozenClassifier on the CPU."""
    from raygan import storage

    spec = ClassifierSpec.from_json(storage.read_json(storage.join(str(uri), SPEC_FILE), settings=settings))
    if storage.is_remote(str(uri)):
        with tempfile.TemporaryDirectory() as tmp:
            local = storage.download_dir(str(uri), tmp, settings=settings)
            return FrozenClassifier(_build(spec, local / spec.weights), spec)
    weights = Path(str(uri).removeprefix("file://")) / spec.weights
    if not weights.exists():
        raise FileNotFoundError(f"classifier weights {spec.weights!r} not found in {uri}")
    return FrozenClassifier(_build(spec, weights), spec)


def save_classifier(model: nn.Module, directory: str | Path, *, spec: ClassifierSpec, settings: Any = None) -> str:
    """Write `model`'s state dict and `classifier.json` to `directory` (local or s3); returns its URI."""
    from raygan import storage

    with tempfile.TemporaryDirectory() as tmp:
        torch.save(model.state_dict(), Path(tmp) / spec.weights)
        (Path(tmp) / SPEC_FILE).write_text(json.dumps(spec.to_json(), indent=2))
        storage.upload_dir(tmp, str(directory), settings=settings)
    return str(directory)


def spec_fingerprint(uri: str | Path, *, settings: Any = None) -> str:
    """sha256 (16 hex) of a spec directory's `classifier.json` and weights: identifies the classifier."""
    from raygan import storage

    spec_bytes = storage.read_bytes(storage.join(str(uri), SPEC_FILE), settings=settings)
    spec = ClassifierSpec.from_json(json.loads(spec_bytes))
    digest = hashlib.sha256(spec_bytes)
    digest.update(storage.read_bytes(storage.join(str(uri), spec.weights), settings=settings))
    return digest.hexdigest()[:16]
