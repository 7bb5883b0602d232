"""The classifier being explained: a spec directory on disk, and the frozen wrapper around it.

A classifier spec is a directory (local or s3) with `classifier.json` plus weights (DESIGN.md,
"Classifier spec"). `FrozenClassifier` maps generator output ([-1, 1], the generator's own size
and channels) to what the model expects (its size, channels and normalisation), never trains,
and reads the model's outputs as one *target* against the rest: for a K-class softmax model
p = softmax(logits)[target] (the other K - 1 classes pooled as "not target"); for a multi-label
sigmoid model p = sigmoid(logit[target]). Every explanation, the GAN objective (Eq. 1) and every
metric see only this p, so two-class, K-class and multi-label classifiers run the same method.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

SPEC_FILE = "classifier.json"
FORMATS = ("torchscript", "torchvision", "factory")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as the image codec turns colour into gray


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
    channels: int = 1  # input channels (1 or 3); a 1-channel generator's gray images are repeated for 3
    mean: tuple[float, ...] = (0.5,)  # per-channel mean applied to images scaled to [0, 1]
    std: tuple[float, ...] = (0.5,)  # per-channel std; (0.5,) and (0.5,) map [0, 1] back to [-1, 1]
    positive_index: int = 1  # output explained by default (a two-class model's positive class); --target-class overrides
    output: Literal["logits", "probabilities"] = "logits"  # what the model returns (before softmax/sigmoid, or after)
    activation: Literal["softmax", "sigmoid"] = "softmax"  # softmax: one of K classes; sigmoid: K independent labels
    classes: tuple[str, ...] = ()  # class (or label) names in output order; empty: classes are named by index
    gradcam_layer: str | None = None  # submodule Grad-CAM reads, as named by model.named_modules(); None: automatic

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"{SPEC_FILE}: unknown format {self.format!r}; choose one of {list(FORMATS)}")
        if self.format == "torchvision" and not self.arch:
            raise ValueError(f"{SPEC_FILE}: format 'torchvision' needs 'arch'")
        if self.format == "factory" and not self.factory:
            raise ValueError(f"{SPEC_FILE}: format 'factory' needs 'factory' = 'package.module:function'")
        if self.channels not in (1, 3):
            raise ValueError(f"{SPEC_FILE}: input channels must be 1 or 3, got {self.channels}")
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, self.channels):
                raise ValueError(f"{SPEC_FILE}: {name} needs 1 or {self.channels} values, got {getattr(self, name)}")
        if self.output not in ("logits", "probabilities") or self.activation not in ("softmax", "sigmoid"):
            raise ValueError(f"{SPEC_FILE}: output must be 'logits' or 'probabilities' and activation 'softmax' or "
                             f"'sigmoid', got {self.output!r} and {self.activation!r}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"{SPEC_FILE}: class names must be unique, got {list(self.classes)}")

    def to_json(self) -> dict[str, Any]:
        """The `classifier.json` document (the `input` block grouped as in DESIGN.md)."""
        data = dataclasses.asdict(self)
        data["input"] = {k: data.pop(k) for k in ("size", "channels", "mean", "std")}
        data["classes"] = list(self.classes)
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
        if "classes" in data:
            data["classes"] = tuple(str(c) for c in data["classes"] or ())
        return cls(**data)

    def class_name(self, index: int) -> str:
        """The name of output `index` (its index as text where the spec names no classes)."""
        return self.classes[index] if index < len(self.classes) else str(index)

    def class_index(self, value: int | str) -> int:
        """The output index of a class given by name or index (an int, or a string of digits)."""
        if isinstance(value, str) and value in self.classes:
            return self.classes.index(value)
        if isinstance(value, (int, str)) and not isinstance(value, bool) and str(value).strip().isdigit():
            index = int(value)
            if self.classes and index >= len(self.classes):
                raise ValueError(f"class index {index} is out of range: the classifier has {len(self.classes)} "
                                 f"classes {list(self.classes)}")
            return index
        named = f"one of {list(self.classes)} or an index" if self.classes else "an output index (the spec names no classes)"
        raise ValueError(f"unknown class {value!r}: give {named}")


class FrozenClassifier(nn.Module):
    """A classifier that never trains, fed generator-range images ([-1, 1]), read as `target` vs the rest."""

    def __init__(self, model: nn.Module, spec: ClassifierSpec, *, target: int | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.spec = spec
        self.target = spec.positive_index if target is None else int(target)  # the output index explained
        for param in self.model.parameters():  # (ScriptModules lack requires_grad_)
            param.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> FrozenClassifier:
        # Frozen means frozen: batch-norm statistics and dropout stay in eval mode.
        super().train(False)
        return self

    def with_target(self, target: int | str) -> FrozenClassifier:
        """The same model (shared, not copied) explaining another class, by index or name."""
        return FrozenClassifier(self.model, self.spec, target=self.spec.class_index(target))

    @property
    def target_name(self) -> str:
        """The explained class's name (or its index as text)."""
        return self.spec.class_name(self.target)

    @property
    def positive_index(self) -> int:
        """The output index explained (kept under its two-class name)."""
        return self.target

    @property
    def is_scripted(self) -> bool:
        """A TorchScript model: no forward hooks, no reset_parameters, layers hidden from isinstance."""
        return isinstance(self.model, torch.jit.ScriptModule)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Map [-1, 1] images [N, C, H, W] to the model's input size, channels and normalisation."""
        assert x.ndim == 4 and x.shape[1] in (1, 3), x.shape  # [N, C, H, W]
        if x.shape[-1] != self.spec.size or x.shape[-2] != self.spec.size:
            x = F.interpolate(x, size=(self.spec.size, self.spec.size), mode="bilinear", align_corners=False, antialias=True)
        if x.shape[1] == 1 and self.spec.channels == 3:
            x = x.expand(-1, 3, -1, -1)  # a gray generator feeding an RGB model: gray on every channel
        elif x.shape[1] == 3 and self.spec.channels == 1:
            x = (x * self.luma.to(x.dtype)).sum(dim=1, keepdim=True)  # a colour generator feeding a gray model
        return ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's raw outputs [N, K] on its own input (logits, or probabilities if it returns those)."""
        out = self.model(self.prepare(x))
        assert out.ndim == 2, f"the classifier must return [N, K] scores, got shape {tuple(out.shape)}"  # [N, K]
        return out.float()

    def log_p_and_log_not_p(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(target | x), log(1 - p(target | x))), [N] each, numerically stable for every output kind."""
        out = self(x)  # [N, K]
        t = self.target
        if self.spec.activation == "sigmoid":
            if self.spec.output == "probabilities":
                p = out[:, t].clamp(1e-7, 1 - 1e-7)
                return p.log(), (-p).log1p()
            return F.logsigmoid(out[:, t]), F.logsigmoid(-out[:, t])
        if self.spec.output == "probabilities":
            out = out.clamp_min(1e-7).log()  # log_softmax below renormalises them
        log_probs = F.log_softmax(out, dim=1)  # [N, K]
        others = torch.cat([log_probs[:, :t], log_probs[:, t + 1:]], dim=1)  # [N, K - 1]: "not the target"
        return log_probs[:, t], torch.logsumexp(others, dim=1)

    def log_p_positive(self, x: torch.Tensor) -> torch.Tensor:
        """log p(target | x), [N]."""
        return self.log_p_and_log_not_p(x)[0]

    def p_positive(self, x: torch.Tensor) -> torch.Tensor:
        """p(target | x), [N]."""
        return self.log_p_positive(x).exp()

    def unsupported(self) -> dict[str, str]:
        """What this model cannot give, and why: "hooks" (Grad-CAM), "reset_parameters" (the randomisation
        sanity check) and "features" (penultimate features, for the Frechet distance)."""
        out: dict[str, str] = {}
        if self.is_scripted:
            out["hooks"] = "TorchScript modules do not support forward hooks on their layers"
            out["reset_parameters"] = "TorchScript layers have no reset_parameters() to randomise them with"
            out["features"] = "TorchScript modules do not support the hook that reads the last linear layer's input"
            return out
        if not any(isinstance(m, nn.Linear) for m in self.model.modules()):
            out["features"] = "the model has no nn.Linear layer whose input would be its penultimate features"
        lacking = sorted({type(m).__name__ for m in self.model.modules()
                          if any(True for _ in m.parameters(recurse=False)) and not hasattr(m, "reset_parameters")})
        if lacking:
            out["reset_parameters"] = f"layers without reset_parameters(): {', '.join(lacking)}"
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [N, F]: the input of the last linear layer (for the Frechet distance)."""
        reason = self.unsupported().get("features")
        if reason is not None:
            raise ValueError(f"features() is not available for this classifier: {reason}")
        last = [m for m in self.model.modules() if isinstance(m, nn.Linear)][-1]
        captured: list[torch.Tensor] = []
        hook = last.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            self.model(self.prepare(x))
        finally:
            hook.remove()
        return captured[-1].float().flatten(1)

    @torch.no_grad()
    def check(self) -> int:
        """Run one blank image through the model and check its outputs against the spec; returns K."""
        probe = torch.zeros(1, self.spec.channels, self.spec.size, self.spec.size, device=self.mean.device)
        out = self.model(probe)
        if out.ndim != 2:
            raise ValueError(f"the classifier must return [N, K] scores, got shape {tuple(out.shape)} "
                             f"for a [1, {self.spec.channels}, {self.spec.size}, {self.spec.size}] input")
        k = int(out.shape[1])
        if self.spec.classes and len(self.spec.classes) != k:
            raise ValueError(f"{SPEC_FILE} names {len(self.spec.classes)} classes {list(self.spec.classes)} but the "
                             f"model has {k} outputs")
        if self.spec.activation == "softmax" and k < 2:
            raise ValueError(f"a softmax classifier needs at least 2 outputs, got {k}; a single-logit model is "
                             "activation 'sigmoid'")
        if not 0 <= self.target < k:
            raise ValueError(f"target class index {self.target} is out of range for a model with {k} outputs")
        return k


@contextmanager
def _torchscript() -> Iterator[None]:
    """torch 2.14 warns that torch.jit is deprecated on every load and save; TorchScript files are
    what users bring, so raygan reads them without repeating torch's notice each time."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def _build(spec: ClassifierSpec, weights: Path) -> nn.Module:
    """Rebuild the bare model a spec describes and load its weights."""
    if spec.format == "torchscript":
        with _torchscript():
            return torch.jit.load(str(weights), map_location="cpu")
    if spec.format == "torchvision":
        import torchvision

        # weights=None: random init, never a download; the state dict below holds the real weights.
        model = torchvision.models.get_model(spec.arch, weights=None, num_classes=spec.num_classes)
        if spec.channels == 1:
            _first_conv_to_gray(model)
    else:
        module_name, _, func_name = (spec.factory or "").partition(":")
        if not module_name or not func_name:
            raise ValueError(f"{SPEC_FILE}: factory must be 'package.module:function', got {spec.factory!r}")
        model = getattr(importlib.import_module(module_name), func_name)(**spec.factory_kwargs)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model


def _first_conv_to_gray(model: nn.Module) -> None:
    """Give a torchvision model a 1-channel first convolution (for gray classifiers of format "torchvision")."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            gray = nn.Conv2d(1, module.out_channels, module.kernel_size, module.stride, module.padding,
                             module.dilation, module.groups, module.bias is not None)
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], gray)
            return


def load_classifier(uri: str | Path, *, target: int | str | None = None, settings: Any = None) -> FrozenClassifier:
    """Load the classifier spec directory at `uri` (local or s3) as a FrozenClassifier on the CPU.

    `target` (a class name or index) is the output explained; None: the spec's `positive_index`.
    The model is probed once with a blank image, so a spec that does not match it fails here.
    """
    from raygan import storage

    spec = ClassifierSpec.from_json(storage.read_json(storage.join(str(uri), SPEC_FILE), settings=settings))
    index = None if target is None else spec.class_index(target)
    if storage.is_remote(str(uri)):
        with tempfile.TemporaryDirectory() as tmp:
            local = storage.download_dir(str(uri), tmp, settings=settings)
            frozen = FrozenClassifier(_build(spec, local / spec.weights), spec, target=index)
    else:
        weights = Path(str(uri).removeprefix("file://")) / spec.weights
        if not weights.exists():
            raise FileNotFoundError(f"classifier weights {spec.weights!r} not found in {uri}")
        frozen = FrozenClassifier(_build(spec, weights), spec, target=index)
    frozen.check()
    return frozen


def save_classifier(model: nn.Module, directory: str | Path, *, spec: ClassifierSpec, settings: Any = None) -> str:
    """Write `model` (a state dict; TorchScript for format "torchscript") and `classifier.json` to
    `directory` (local or s3); returns its URI."""
    from raygan import storage

    with tempfile.TemporaryDirectory() as tmp:
        if spec.format == "torchscript":
            with _torchscript():
                scripted = model if isinstance(model, torch.jit.ScriptModule) else torch.jit.script(model)
                torch.jit.save(scripted, str(Path(tmp) / spec.weights))
        else:
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


__all__ = ["FORMATS", "SPEC_FILE", "ClassifierSpec", "FrozenClassifier", "load_classifier", "save_classifier",
           "spec_fingerprint"]
