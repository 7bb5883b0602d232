"""Fixtures of the render tests: factories from render_helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from render_helpers import make_explanation as _make_explanation
from render_helpers import write_results as _write_results


@pytest.fixture()
def make_explanation() -> Callable[..., Any]:
    """Factory of real Explanation objects with a smooth anatomy-like image and a sigmoid traversal."""
    return _make_explanation


@pytest.fixture()
def write_results() -> Callable[..., Any]:
    """Factory: a small results table whose map artifacts are written under a root directory."""
    return _write_results
