"""Where a number came from: file hashes, code revision, library versions.

Everything mxpose writes next to a result (the evaluation card, a checkpoint's ``.json``,
a DB's meta table) takes its facts from here, so a run can be named and rerun. Nothing
here imports MXNet; every function is cheap except hashing a large file, which streams.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from typing import Dict, Optional

from ._version import __version__

__all__ = ["sha256_file", "file_fingerprint", "hash_json", "hash_ids", "code_revision",
           "library_versions", "short_hash"]


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def file_fingerprint(path: str) -> Dict[str, object]:
    """``{"path": absolute path, "sha256": hex, "size": bytes}`` of a file."""
    return {"path": os.path.abspath(path), "sha256": sha256_file(path),
            "size": os.path.getsize(path)}


def hash_json(obj) -> str:
    """SHA-256 of a JSON-able value in canonical form (sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_ids(ids) -> str:
    """SHA-256 of a set of integer ids (sorted, comma-separated): names an image subset."""
    text = ",".join(str(int(i)) for i in sorted(int(i) for i in ids))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def short_hash(h: Optional[str], n: int = 10) -> str:
    return (h or "?")[:n]


@functools.lru_cache(maxsize=1)
def code_revision() -> Dict[str, object]:
    """The git revision of the mxpose checkout in use, with a dirty flag.

    ``{"git": None, "dirty": None}`` when mxpose does not run from a git checkout (an
    installed wheel) or git is unavailable. "Dirty" means tracked files differ from the
    commit; untracked files (data, work dirs) do not count.
    """
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(top, ".git")):
        return {"git": None, "dirty": None}

    def git(*args):
        return subprocess.run(["git", "-C", top, *args], capture_output=True, text=True,
                              timeout=10)
    try:
        rev = git("rev-parse", "HEAD")
        if rev.returncode != 0:
            return {"git": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"git": None, "dirty": None}
    return {"git": rev.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _dist_version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:   # pragma: no cover (Python < 3.8)
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def library_versions() -> Dict[str, Optional[str]]:
    """Versions of what shapes a result: mxpose, Python, numpy, pycocotools, OpenCV, and
    MXNet / onnxruntime (read from package metadata: nothing is imported)."""
    out = {"mxpose": __version__, "python": sys.version.split()[0]}
    for name, dist in (("numpy", "numpy"), ("pycocotools", "pycocotools"),
                       ("opencv", "opencv-python-headless"), ("mxnet", "mxnet"),
                       ("onnxruntime", "onnxruntime")):
        v = _dist_version(dist)
        if v is None and name == "opencv":
            v = _dist_version("opencv-python")
        out[name] = v
    return out
