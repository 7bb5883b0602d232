"""Explanations: inversion (Eq. 2), latent traversal, attribution maps, the Explainer, results files.

Importing this package needs only torch (the bare GPU machine has nothing else): captum and
pytorch_msssim are imported inside the functions that use them, and the results I/O edge
(pyarrow, storage) is loaded on first use of its names.
"""

from typing import Any

from raygan.explain.attribution import MAP_NAMES, difference_map, gradcam, integrated_gradients
from raygan.explain.explainer import Explainer, Explanation
from raygan.explain.inversion import Inversion, invert
from raygan.explain.traversal import Traversal, crossing_alphas, monotone_flags, spearman_rho, traverse

_RESULTS = ("ExplainSummary", "RESULT_SCHEMA", "existing_keys", "explain_rows", "explain_shards")


def __getattr__(name: str) -> Any:
    if name in _RESULTS:
        from raygan.explain import results

        return getattr(results, name)
    raise AttributeError(f"module 'raygan.explain' has no attribute {name!r}")


__all__ = [
    "MAP_NAMES", "Explainer", "Explanation", "Inversion", "Traversal", "crossing_alphas", "difference_map",
    "gradcam", "integrated_gradients", "invert", "monotone_flags", "spearman_rho", "traverse", *_RESULTS,
]
