"""Optional dependency groups ("extras") and the one-line message when one is missing.

`pip install raygan` gives the core: models, explanations and metrics on torch, torchvision,
numpy, Pillow and pytorch-msssim, enough for the Python API on local bundles. Everything else is
an extra, named in pyproject.toml and here (tests keep the two in step):

  attributions  Grad-CAM and Integrated Gradients (captum)
  data          Parquet shards and results, phantoms, ingest, pictures and reports (pyarrow, tqdm, matplotlib)
  s3            s3:// URIs (boto3, pyarrow)
  dicom         DICOM ingest (pydicom)
  ray           training, bulk jobs, the demo (Ray Train / Data, TensorBoard events)
  tune          `raygan tune` (Ray Tune, Optuna)
  serve         `raygan serve` (Ray Serve, FastAPI, pydantic)
  tracking      MLflow beside TensorBoard when MLFLOW_TRACKING_URI is set (mlflow-skinny)
  all           everything
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS: dict[str, tuple[str, ...]] = {  # extra -> the top-level modules it provides
    "attributions": ("captum",),
    "data": ("pyarrow", "tqdm", "matplotlib"),
    "s3": ("boto3", "botocore", "pyarrow"),
    "dicom": ("pydicom",),
    "ray": ("ray", "tensorboard"),
    "tune": ("optuna",),
    "serve": ("fastapi", "fastapi_offline", "pydantic", "multipart", "python_multipart", "starlette"),
    "tracking": ("mlflow",),
}
# Modules several extras bring: a command names its own extra for them (see `extra_for`).
_SHARED = {"pyarrow", "ray", "tqdm", "matplotlib"}


class MissingExtra(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    def __init__(self, extra: str, module: str, what: str = "this") -> None:
        super().__init__(f"{what} needs the optional dependencies of raygan[{extra}] (module {module!r} is not "
                         f"installed): pip install 'raygan[{extra}]'", name=module)
        self.extra = extra
        self.module = module


def extra_for(module: str, *, default: str | None = None) -> str | None:
    """The extra that provides top-level `module`; for modules several extras share, `default` first."""
    top = module.split(".")[0]
    if default is not None and (top in _SHARED or top in EXTRAS.get(default, ())):
        return default
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)


def require(module: str, *, extra: str, what: str) -> ModuleType:
    """`import module`, or MissingExtra naming `extra` when it (or something it needs) is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if isinstance(e, MissingExtra):
            raise
        raise MissingExtra(extra, e.name or module, what) from e


__all__ = ["EXTRAS", "MissingExtra", "extra_for", "require"]
