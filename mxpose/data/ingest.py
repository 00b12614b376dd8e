"""What an ingestion run did, for every dataset (COCO, MPII): the one summary and report.

Policy (``coco_parse``, ``mpi_parse``): a bad record (a malformed annotation, an image
that is missing, undecodable or of the wrong size) is skipped with its reason and the
run goes on; the summary ends with the counts per reason and the first records named,
and the full list goes to a JSON report beside the DB (:func:`report_path`). Records
that are stored but look wrong (labelled keypoints far outside the image) are counted
as warnings the same way. ``--strict`` turns a malformed annotation back into an abort.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

__all__ = ["IngestSummary", "FAR_OUTSIDE_MARGIN", "far_outside", "report_path"]

#: Keypoints may lie a little outside the frame (annotators mark cut-off joints); further
#: than this fraction of the image size away is a coordinate bug, not a pose.
FAR_OUTSIDE_MARGIN = 0.5

WARN_FAR_OUTSIDE = "labelled keypoints far outside the image"


def far_outside(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """Mask (..., K) of labelled keypoints (v > 0) further than ``FAR_OUTSIDE_MARGIN``
    of the image size outside a ``width`` x ``height`` image."""
    k = np.asarray(keypoints, dtype=np.float64)
    mx, my = FAR_OUTSIDE_MARGIN * width, FAR_OUTSIDE_MARGIN * height
    out = (k[..., 0] < -mx) | (k[..., 0] > width - 1 + mx) | \
          (k[..., 1] < -my) | (k[..., 1] > height - 1 + my)
    return out & (k[..., 2] > 0)


def report_path(db_path: str) -> str:
    """The JSON report of skipped and warned records beside a DB: ``<db>.skipped.json``."""
    return str(db_path) + ".skipped.json"


@dataclass
class IngestSummary:
    """Counts of one ingestion run.

    ``skipped`` maps a reason to the names of the records (images or annotations) left
    out, ``warnings`` a reason to records stored with a warning; ``details`` holds one
    line per named record. ``split_counts``, ``people_dropped`` and ``val_list_unknown``
    are filled by the MPII reader.
    """
    written: int = 0
    already_stored: int = 0
    people: int = 0
    regions: int = 0
    empty_skipped: int = 0
    people_dropped: int = 0
    skipped: Dict[str, List[str]] = field(default_factory=OrderedDict)
    warnings: Dict[str, List[str]] = field(default_factory=OrderedDict)
    details: Dict[str, str] = field(default_factory=dict)
    split_counts: Dict[str, int] = field(default_factory=dict)
    val_list_unknown: List[str] = field(default_factory=list)
    seconds: float = 0.0
    report: str = ""

    def skip(self, reason: str, name: str, detail: str = ""):
        """Record that ``name`` was left out for ``reason``."""
        self.skipped.setdefault(reason, []).append(name)
        if detail and name not in self.details:
            self.details[name] = detail

    def warn(self, reason: str, name: str, detail: str = ""):
        """Record that ``name`` was stored but looks wrong (``reason``)."""
        self.warnings.setdefault(reason, []).append(name)
        if detail and name not in self.details:
            self.details[name] = detail

    def check_people(self, file_name: str, people, width: int, height: int):
        """Warn about stored people whose labelled keypoints lie far outside the image."""
        for i, p in enumerate(people):
            far = far_outside(p["keypoints"], width, height)
            if far.any():
                x, y = np.asarray(p["keypoints"])[far][0, :2]
                who = f"{file_name}, person {p.get('source_id', i)}"
                self.warn(WARN_FAR_OUTSIDE, who, f"{int(far.sum())} keypoints, e.g. "
                          f"({x:.1f}, {y:.1f}) on a {width}x{height} image")

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    @property
    def num_warnings(self) -> int:
        return sum(len(v) for v in self.warnings.values())

    def _named(self, names: List[str], examples: int) -> str:
        ex = "; ".join(f"{n} ({self.details[n]})" if n in self.details else n
                       for n in names[:examples])
        more = f"; ... {len(names) - examples} more" if len(names) > examples else ""
        return ex + more

    def lines(self, examples: int = 3) -> List[str]:
        """The human-readable summary."""
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        splits = ", ".join(f"{k} {v}" for k, v in sorted(self.split_counts.items()))
        out = [f"written: {self.written} images" + (f" ({splits})" if splits else "")
               + f" ({self.people} people, {self.regions} ignore regions) in "
               f"{self.seconds:.1f} s, {rate:.1f} images/s",
               f"already stored: {self.already_stored} images"]
        if self.empty_skipped:
            out.append(f"skipped, no person annotations: {self.empty_skipped} images "
                       f"(--keep-empty stores them)")
        if self.people_dropped:
            out.append(f"people dropped (no data in their annotation): {self.people_dropped}")
        for reason, names in self.skipped.items():
            out.append(f"skipped, {reason}: {len(names)}, e.g. {self._named(names, examples)}")
        for reason, names in self.warnings.items():
            out.append(f"warning, {reason}: {len(names)} (stored), e.g. "
                       f"{self._named(names, examples)}")
        if self.val_list_unknown:
            out.append(f"validation-list names not in the annotations: "
                       f"{len(self.val_list_unknown)}, e.g. "
                       + ", ".join(self.val_list_unknown[:examples]))
        if self.report:
            out.append(f"full list of skipped and warned records: {self.report}")
        return out

    def to_dict(self) -> dict:
        return {"written": self.written, "already_stored": self.already_stored,
                "people": self.people, "regions": self.regions,
                "empty_skipped": self.empty_skipped, "people_dropped": self.people_dropped,
                "split_counts": dict(self.split_counts),
                "skipped": {k: list(v) for k, v in self.skipped.items()},
                "warnings": {k: list(v) for k, v in self.warnings.items()},
                "details": dict(self.details), "val_list_unknown": list(self.val_list_unknown),
                "seconds": self.seconds}

    def write_report(self, db_path: str) -> str:
        """Write :meth:`to_dict` to :func:`report_path` when anything was skipped or warned
        (else remove an older report); returns the path written, or ''."""
        path = report_path(db_path)
        if not self.num_skipped and not self.num_warnings:
            if os.path.isfile(path):
                os.remove(path)
            self.report = ""
            return ""
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
        os.replace(tmp, path)
        self.report = path
        return path
