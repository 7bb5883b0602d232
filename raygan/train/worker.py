"""What every Ray Train worker loop shares: its data shard's batches for one epoch, sums over workers.

The GAN, classifier and encoder loops read their shard the same way (seeded local shuffle, whole
batches only, straight onto the worker's device) and reduce their epoch totals the same way. The
shuffle is seeded by `epoch_seed`, but Ray Data repeats the order only when the same blocks arrive in
the same order (tests/train/test_worker.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

SHUFFLE_BUFFER = 256  # rows in Ray Data's local shuffle buffer


def epoch_batches(shard: Any, *, batch_size: int, device: torch.device, seed: int,
                  shuffle_buffer: int = SHUFFLE_BUFFER) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch of `shard` (a Ray Data `DataIterator`) as dicts of tensors on `device`, in a
    seeded order; the last partial batch is dropped, so every step sees `batch_size` rows."""
    return iter(shard.iter_torch_batches(batch_size=batch_size, drop_last=True, device=device,
                                         local_shuffle_buffer_size=shuffle_buffer, local_shuffle_seed=seed))


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum over workers when running data-parallel (a no-op on one worker)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


__all__ = ["SHUFFLE_BUFFER", "all_reduce_sum", "epoch_batches"]
