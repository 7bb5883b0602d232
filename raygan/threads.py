"""How many CPU threads torch uses in this process.

torch's default is one thread per core. On a small or busy machine that is the slowest choice:
its threads spin waiting for each other while other processes hold the cores (measured here:
one `raygan explain` took 424 s beside other work with the default and 17 s with one thread;
benchmarks/explain_load.py). The default is therefore one thread on machines with 2 cores or
fewer, and otherwise the cores the load average leaves free.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads(*, cores: int | None = None, load: float | None = None) -> int:
    """1 on machines with <= 2 cores; else the cores that the 1-minute load average leaves free (>= 1)."""
    cores = available_cores() if cores is None else cores
    if cores <= 2:
        return 1
    load = os.getloadavg()[0] if load is None else load
    return max(1, min(cores, int(cores - load)))


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads to `threads` (None: `default_threads()`); returns the number set."""
    import torch

    n = default_threads() if threads is None else threads
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    return n


__all__ = ["available_cores", "default_threads", "set_threads"]
