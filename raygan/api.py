"""The Python API: load a bundle, explain images, get typed results; `raygan explain` for code.

    import raygan

    pipe = raygan.load("runs/demo/bundle")              # a local path or s3:// URI
    results = pipe.explain([Image.open("chest.png")], steps=200)
    print(results[0].target_class, results[0].p_input, results[0].p_counterfactual, results[0].warning)
    pipe.save("copy/of/bundle")                         # and raygan.load("copy/of/bundle") again

`Pipeline` holds one bundle's generator and frozen classifier (like diffusers' pipelines, it
is loaded and saved whole; like pytorch-grad-cam, calling it on images gives maps). Options are
keyword-only and named as `raygan explain`'s flags (`--steps` -> `steps`, `--mse-weight` ->
`mse_weight`, `--no-attributions` -> `attributions=False`, `--no-encoder` -> `no_encoder=True`);
None keeps the bundle's (tuned) settings. A bundle with an encoder (`raygan train-encoder`)
starts every inversion from E(x) and refines `encoder_steps` steps; `no_encoder=True` inverts
from scratch. Results are `raygan.Explanation` dataclasses, one per image, in input order; every one
names the class it explains and carries the bundle's quality-gate warning when there is one.
Needs only the core install for local bundles (s3:// needs `raygan[s3]`, files of results
`raygan[data]`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from raygan import storage
from raygan.bundle import Bundle, load_bundle
from raygan.config import replace
from raygan.data.codec import decode_image
from raygan.explain.explainer import Explainer, Explanation
from raygan.quality import Quality

if TYPE_CHECKING:
    from PIL import Image

    from raygan.explain.results import ExplainSummary

ImageLike = Any  # a PIL image, a tensor [C, H, W] (or [N, C, H, W]), PNG/JPEG bytes, or a file path / URI


class Pipeline:
    """One bundle, ready to explain images: `Pipeline.load(uri)`, `pipe.explain(images)`, `pipe.save(uri)`."""

    def __init__(self, bundle: Bundle, *, device: torch.device | str | None = None, attributions: bool = True,
                 settings: storage.StorageSettings | None = None, no_encoder: bool = False) -> None:
        self.bundle = bundle
        self.attributions = attributions  # default of explain(attributions=...)
        self.no_encoder = no_encoder  # default of explain(no_encoder=...)
        self.settings = settings
        self._engine = Explainer.from_bundle(bundle, device=device, attributions=attributions,
                                             no_encoder=no_encoder)  # moves the models once

    @classmethod
    def load(cls, uri: str | Path, *, device: torch.device | str | None = None, attributions: bool = True,
             settings: storage.StorageSettings | None = None, no_encoder: bool = False) -> Pipeline:
        """The bundle at `uri` (from `raygan train`), on `device` (default: CUDA when available)."""
        return cls(load_bundle(str(uri), settings=settings), device=device, attributions=attributions,
                   settings=settings, no_encoder=no_encoder)

    def save(self, uri: str | Path, *, settings: storage.StorageSettings | None = None) -> str:
        """Write the bundle (generator, classifier spec, settings, target, quality) to `uri`; `load` reads it back."""
        return self.bundle.save(str(uri), settings=settings or self.settings)

    # --- what it explains -----------------------------------------------------------------------

    @property
    def target_class(self) -> str:
        """The class explained (name, or output index as text): every p is p(target class)."""
        return self.bundle.target_class

    @property
    def classes(self) -> tuple[str, ...]:
        """The classifier's class names (empty when its spec names none)."""
        return self.bundle.classifier.spec.classes

    @property
    def quality(self) -> Quality:
        """The bundle's quality gate: class consistency, Frechet distance, and the warning below 0.9."""
        return self.bundle.quality

    @property
    def maps_skipped(self) -> dict[str, str]:
        """Maps this classifier cannot give (e.g. Grad-CAM on TorchScript), and why."""
        return dict(self._engine.maps_skipped)

    @property
    def image_size(self) -> int:
        """Side of the generator's images: inputs are center-cropped and resized to it."""
        return self._engine.image_size

    @property
    def channels(self) -> int:
        """Channels of the generator's images (inputs are converted to them)."""
        return self._engine.channels

    @property
    def uses_encoder(self) -> bool:
        """Whether explanations start from the bundle's encoder (it has one and no_encoder is off)."""
        return self._engine.encoder is not None

    @property
    def device(self) -> torch.device:
        """Where the models run."""
        return self._engine.device

    # --- explaining -----------------------------------------------------------------------------

    def _explainer(self, *, steps: int | None, lr: float | None, mse_weight: float | None,
                   bce_weight: float | None, rate: float | None, frames: int | None,
                   attributions: bool | None, encoder_steps: int | None = None,
                   no_encoder: bool | None = None) -> Explainer:
        engine = self._engine
        inversion = replace(engine.inversion, steps=steps, lr=lr, mse_weight=mse_weight, bce_weight=bce_weight,
                            encoder_steps=encoder_steps)
        traversal = replace(engine.traversal, rate=rate, frames=frames)
        attributions = self.attributions if attributions is None else attributions
        no_encoder = self.no_encoder if no_encoder is None else no_encoder
        if (inversion, traversal, attributions, no_encoder) == (engine.inversion, engine.traversal, engine.attributions,
                                                                self.no_encoder):
            return engine
        return Explainer.from_bundle(self.bundle, inversion=inversion, traversal=traversal, device=engine.device,
                                     attributions=attributions, no_encoder=no_encoder)

    def explain(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        image_ids: Sequence[str] | None = None,
        steps: int | None = None,
        lr: float | None = None,
        mse_weight: float | None = None,
        bce_weight: float | None = None,
        rate: float | None = None,
        frames: int | None = None,
        batch_size: int = 16,
        attributions: bool | None = None,
        encoder_steps: int | None = None,
        no_encoder: bool | None = None,
    ) -> list[Explanation]:
        """One Explanation per image, in order.

        `images`: PIL images, tensors in [-1, 1] ([C, H, W] each, or one [N, C, H, W] batch; uint8
        tensors are read as 0..255), PNG/JPEG bytes, or file paths / URIs; all are center-cropped and
        resized to the generator's side and converted to its channels, as `raygan explain` does.
        `image_ids` seed each image's inversion (default: file stems, else "image-<i>"), so the same
        id and image give the same result here, in the CLI and in the service.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        tensors, ids = self._inputs(images)
        if image_ids is not None:
            if len(image_ids) != len(tensors):
                raise ValueError(f"got {len(image_ids)} image_ids for {len(tensors)} images")
            ids = [str(i) for i in image_ids]
        explainer = self._explainer(steps=steps, lr=lr, mse_weight=mse_weight, bce_weight=bce_weight, rate=rate,
                                    frames=frames, attributions=attributions, encoder_steps=encoder_steps,
                                    no_encoder=no_encoder)
        out: list[Explanation] = []
        for lo in range(0, len(tensors), batch_size):
            batch = torch.stack(tensors[lo:lo + batch_size])  # [B, C, S, S]
            out += explainer.explain(batch, image_ids=ids[lo:lo + batch_size])
        return out

    __call__ = explain

    def explain_files(
        self,
        input_uri: str,
        out_uri: str,
        *,
        steps: int | None = None,
        lr: float | None = None,
        mse_weight: float | None = None,
        bce_weight: float | None = None,
        rate: float | None = None,
        frames: int | None = None,
        batch_size: int = 16,
        attributions: bool | None = None,
        encoder_steps: int | None = None,
        no_encoder: bool | None = None,
        progress: bool = True,
    ) -> ExplainSummary:
        """`raygan explain INPUT --out OUT`: input shards or one image file -> results Parquet + PNGs under `out_uri`."""
        from raygan.extras import require

        require("pyarrow", extra="data", what="explain_files (Parquet results)")
        from raygan.explain.results import explain_shards

        explainer = self._explainer(steps=steps, lr=lr, mse_weight=mse_weight, bce_weight=bce_weight, rate=rate,
                                    frames=frames, attributions=attributions, encoder_steps=encoder_steps,
                                    no_encoder=no_encoder)
        return explain_shards(str(input_uri), str(out_uri), explainer=explainer, batch_size=batch_size,
                              settings=self.settings, progress=progress)

    # --- inputs -----------------------------------------------------------------------------------

    def _inputs(self, images: ImageLike | Sequence[ImageLike]) -> tuple[list[torch.Tensor], list[str]]:
        """[C, S, S] tensors in [-1, 1] at the generator's size and channels, and default ids."""
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            items: list[Any] = list(images.unbind(0))  # one [N, C, H, W] batch
        elif isinstance(images, (list, tuple)):
            items = list(images)
        else:
            items = [images]
        tensors, ids = [], []
        for i, item in enumerate(items):
            tensors.append(self._one(item, i))
            ids.append(_default_id(item, i))
        return tensors, ids

    def _one(self, item: ImageLike, index: int) -> torch.Tensor:
        size, channels = self.image_size, self.channels
        if isinstance(item, torch.Tensor):
            return _fit_tensor(item, size=size, channels=channels, index=index)
        if isinstance(item, (str, Path)):
            item = storage.read_bytes(str(item), settings=self.settings)
        elif not isinstance(item, (bytes, bytearray, memoryview)):
            item = _pil_png(item, index)
        return decode_image(bytes(item), size=size, channels=channels)  # [C, S, S], the CLI's decoding


def _default_id(item: ImageLike, index: int) -> str:
    """A file's stem (paths, PIL images opened from files), else "image-<index>"."""
    name = str(item) if isinstance(item, (str, Path)) else getattr(item, "filename", "") or ""
    stem = PurePosixPath(name.rstrip("/")).stem if name else ""
    return stem or f"image-{index}"


def _pil_png(image: Image.Image, index: int) -> bytes:
    """A PIL image as PNG bytes, so it is decoded exactly as a file would be (bit depth, colour, cropping)."""
    if not hasattr(image, "save"):
        raise TypeError(f"image {index}: expected a PIL image, a tensor, bytes or a path, got {type(image).__name__}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _fit_tensor(image: torch.Tensor, *, size: int, channels: int, index: int) -> torch.Tensor:
    """A [C, H, W] tensor (float in [-1, 1], or uint8) -> [channels, size, size] float32 in [-1, 1]."""
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image {index}: expected a [C, H, W] tensor with C = 1 or 3, got shape {tuple(image.shape)}")
    x = image.detach().cpu()
    x = x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()
    if float(x.min()) < -1.001 or float(x.max()) > 1.001:
        raise ValueError(f"image {index}: float tensors must be in [-1, 1] (got {float(x.min()):.3g} .. "
                         f"{float(x.max()):.3g}); pass uint8 for 0..255 pixels")
    if x.shape[0] == 3 and channels == 1:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)  # luma, as the codec
    elif x.shape[0] == 1 and channels == 3:
        x = x.expand(3, -1, -1)
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[:, top:top + side, left:left + side]  # the centered square, as the codec crops
    if side != size:
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return x.clamp(-1, 1).contiguous()  # [C, S, S]


def load(uri: str | Path, *, device: torch.device | str | None = None, attributions: bool = True,
         settings: storage.StorageSettings | None = None, no_encoder: bool = False) -> Pipeline:
    """`Pipeline.load`: the bundle at `uri`, ready to explain images."""
    return Pipeline.load(uri, device=device, attributions=attributions, settings=settings, no_encoder=no_encoder)


__all__ = ["ImageLike", "Pipeline", "load"]
