"""JSON-lines training log: one JSON object per line, appended, flushed at every write.

Records with an ``iteration`` and a ``loss`` are training windows (``stages`` holds the
per-stage ``[paf, heat]`` losses, ``lr``, ``img_per_s``, ``data_wait`` the fraction of the
window spent waiting for data); others carry an ``event`` (``start``, ``checkpoint``,
``skip``). A resumed run appends, so an iteration may appear twice after a crash:
readers keep the last record per iteration (:func:`read_log`).
"""
from __future__ import annotations

import json
import math
import os
from typing import List, Optional

__all__ = ["JsonLinesLog", "read_log"]


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


class JsonLinesLog:
    """Append records to ``path`` (no-op when ``path`` is None, e.g. on worker rank > 0)."""

    def __init__(self, path: Optional[str]):
        self.path = path
        self._f = None
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            torn = False
            if os.path.isfile(path) and os.path.getsize(path):
                with open(path, "rb") as f:      # a killed run may have left half a line
                    f.seek(-1, os.SEEK_END)
                    torn = f.read(1) != b"\n"
            self._f = open(path, "a")
            if torn:
                self._f.write("\n")

    def write(self, record: dict):
        if self._f is None:
            return
        self._f.write(json.dumps(_clean(record)) + "\n")
        self._f.flush()

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None


def read_log(path: str) -> List[dict]:
    """Training-window records of a log, sorted by iteration, the last one kept where a
    resumed run repeated an iteration. A truncated last line (killed run) is ignored."""
    by_it = {}
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "event" in rec or "iteration" not in rec:
                continue
            by_it[int(rec["iteration"])] = rec
    return [by_it[k] for k in sorted(by_it)]
