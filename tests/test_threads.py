"""torch's thread count: one thread on small or busy machines, the free cores otherwise."""

from __future__ import annotations

import torch

from raygan.threads import default_threads, set_threads


def test_default_threads() -> None:
    assert default_threads(cores=1, load=0.0) == 1
    assert default_threads(cores=2, load=0.0) == 1  # small machine: 1 even when idle
    assert default_threads(cores=8, load=0.0) == 8
    assert default_threads(cores=8, load=6.5) == 1  # busy: what the load leaves
    assert default_threads(cores=8, load=20.0) == 1


def test_set_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_threads(None) == default_threads() == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
