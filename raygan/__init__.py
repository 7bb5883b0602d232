"""raygan: visual explanations of image classifiers by latent traversal of a class-conditional GAN.

Dravid & Katsaggelos, "Visual Explanations for CNNs via Latent Traversal of GANs" (AAAI 2022),
run at scale on Ray. Importing raygan never starts Ray; the core (models, explain, metrics) and
the Python API need only torch, torchvision, numpy, Pillow and pytorch-msssim:

    import raygan
    pipe = raygan.load("runs/demo/bundle")          # raygan.Pipeline.load; pipe.save(uri) writes it back
    results = pipe.explain(images, steps=200)       # list[raygan.Explanation]

The names below are imported on first use, so `import raygan` (and `raygan --help`) stays light.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {  # public name -> module that defines it
    "Pipeline": "raygan.api",
    "load": "raygan.api",
    "Explanation": "raygan.explain.explainer",
    "Quality": "raygan.quality",
    "Bundle": "raygan.bundle",
    "ClassifierSpec": "raygan.models.frozen",
    "FrozenClassifier": "raygan.models.frozen",
    "load_classifier": "raygan.models.frozen",
    "save_classifier": "raygan.models.frozen",
    "MissingExtra": "raygan.extras",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'raygan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
