"""One Explanation -> the service's answer: numbers, and PNG pictures inline (base64) or in storage.

Maps are answered as colour heat maps over the input (for people); the results contract's
gray map PNGs (for averaging) are what shard jobs and bulk jobs write instead.
"""

from __future__ import annotations

import base64
from typing import Any

from raygan import storage
from raygan.explain.explainer import Explanation
from raygan.service.schemas import PictureMode, finite

MAP_PICTURES = ("diff", "swap", "gradcam", "ig")


def render_pictures(expl: Explanation, *, figure: bool = True) -> dict[str, Any]:
    """PNG bytes of everything the viewer shows: name -> bytes, and traversal_frames -> list of bytes."""
    from raygan.render import explanation_figure, heatmap, png_bytes

    pictures: dict[str, Any] = {
        "input": png_bytes(expl.image, kind="image"),
        "reconstruction": png_bytes(expl.reconstruction, kind="image"),
        "counterfactual": png_bytes(expl.counterfactual, kind="image"),
        "traversal_frames": [png_bytes(frame, kind="image") for frame in expl.traversal_frames],  # [F] of [C, S, S]
    }
    for name in MAP_PICTURES:
        if name in expl.maps:
            pictures[name] = png_bytes(heatmap(expl.maps[name], base=expl.image))
    if figure:
        pictures["figure"] = png_bytes(explanation_figure(expl))
    return pictures


def inline(pictures: dict[str, Any]) -> dict[str, Any]:
    """The same pictures as base64 strings (mode "inline")."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    out: dict[str, Any] = {"mode": "inline"}
    for name, value in pictures.items():
        out[name] = [b64(v) for v in value] if isinstance(value, list) else b64(value)
    return out


def store(pictures: dict[str, Any], prefix: str, *, settings: storage.StorageSettings | None = None) -> dict[str, Any]:
    """Write the pictures under `prefix` (one directory per request) and return their URIs (mode "stored")."""
    out: dict[str, Any] = {"mode": "stored"}
    for name, value in pictures.items():
        if isinstance(value, list):
            uris = []
            for i, data in enumerate(value):
                uri = storage.join(prefix, f"traversal_{i:03d}.png")
                storage.write_bytes(uri, data, settings=settings)
                uris.append(uri)
            out[name] = uris
        else:
            uri = storage.join(prefix, f"{name}.png")
            storage.write_bytes(uri, value, settings=settings)
            out[name] = uri
    return out


def answer(
    expl: Explanation,
    *,
    batch_size: int,
    mode: PictureMode,
    prefix: str | None = None,
    settings: storage.StorageSettings | None = None,
) -> dict[str, Any]:
    """The ExplainResponse fields of one explanation but bundle_id and seconds (the caller knows those).

    Pictures per `mode`: "inline" base64, "stored" under `prefix` (required then), or "none".
    """
    if mode == "none":
        pictures: dict[str, Any] = {"mode": "none"}
    else:
        rendered = render_pictures(expl)
        if mode == "stored":
            if prefix is None:
                raise ValueError("pictures mode 'stored' needs a pictures prefix")
            pictures = store(rendered, prefix, settings=settings)
        else:
            pictures = inline(rendered)
    return {
        "image_id": expl.image_id,
        "target_class": expl.target_class,
        "warning": expl.warning,
        "maps_skipped": dict(expl.maps_skipped),
        "p_input": float(expl.p_input),
        "p_reconstruction": float(expl.p_reconstruction),
        "p_counterfactual": float(expl.p_counterfactual),
        "traversal": {"alphas": [float(a) for a in expl.traversal_alphas],
                      "probs": [float(p) for p in expl.traversal_probs]},
        "metrics": {
            "monotone": bool(expl.monotone),
            "spearman": finite(expl.spearman),
            "crossing_alpha": finite(expl.crossing_alpha),
            "recon_mse": finite(expl.recon_mse),
            "recon_ssim": finite(expl.recon_ssim),
        },
        "steps_used": int(expl.steps_used),
        "used_fallback": bool(expl.used_fallback),
        "batch_size": int(batch_size),
        "pictures": pictures,
    }


__all__ = ["MAP_PICTURES", "answer", "inline", "render_pictures", "store"]
