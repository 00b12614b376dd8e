"""Datasets: ingestion into the SQLite pose store, reading, augmentation, batching.

The store is imported here; ``PoseDataset`` / ``make_loader`` (which need MXNet) and the
ingestion modules ``mpii``, ``coco``, ``synthetic`` load on first use.
"""
import importlib

from .store import SCHEMA_VERSION, PoseDB, PoseDBError, PoseDBWriter

__all__ = ["PoseDB", "PoseDBError", "PoseDBWriter", "SCHEMA_VERSION", "PoseDataset",
           "make_loader"]

_LAZY = {"PoseDataset": ".dataset", "make_loader": ".loader"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in ("mpii", "coco", "synthetic", "dataset", "loader", "transforms"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'mxpose.data' has no attribute {name!r}")
