"""The OpenMP thread default, set when mxpose is imported (before MXNet loads)."""
from __future__ import annotations

import os
import sys

__all__ = ["use_all_cores", "usable_cores"]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def use_all_cores() -> bool:
    """Let MXNet's CPU operators use every core this process may run on.

    Left alone, the mxnet 1.9.1 wheel runs its OpenMP operators (oneDNN convolutions
    included) on one thread on small VMs: it takes half of the processor count, assuming
    hyper-threading (measured on 2 cores: CPM-VGG19 forward 1174 ms on 1 thread, 640 ms
    on 2). This sets ``OMP_NUM_THREADS`` to :func:`usable_cores`. ``import mxpose`` calls
    it, so scripts using mxpose as a library get the same default as its tools.

    A value the user set is kept. OpenMP reads the variable once, when MXNet's library
    loads: if ``mxnet`` is already imported it is too late, and nothing is set (import
    mxpose first, or set ``OMP_NUM_THREADS`` yourself).

    Returns
    -------
    bool
        True when this call set the variable.
    """
    if "OMP_NUM_THREADS" in os.environ or "mxnet" in sys.modules:
        return False
    os.environ["OMP_NUM_THREADS"] = str(usable_cores())
    return True
