"""Datasets: ingestion into the SQLite pose store, reading, augmentation, batching."""
from .store import PoseDB, PoseDBError, PoseDBWriter, SCHEMA_VERSION

__all__ = ["PoseDB", "PoseDBError", "PoseDBWriter", "SCHEMA_VERSION"]
