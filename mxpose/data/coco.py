"""COCO-format keypoint ingestion into the SQLite pose store.

Reads a COCO ``person_keypoints_*.json`` or any keypoint file in COCO format (plain
:mod:`json`, indexed by image once, so the 260 MB train2017 file is walked a single time)
and writes one :class:`PoseDBWriter` DB whose layout comes from the file:

- the keypoint category's ``keypoints`` names give the layout
  (:func:`mxpose.skeleton.layout_from_category`): a shipped one when the names match it
  (``coco``, ``crowdpose``, ``coco_foot``, ...; the file's ``skeleton`` list is then ignored),
  else a custom layout named after the file, limbs from its 1-based ``skeleton`` pairs and
  flip pairs from the left/right names. COCO-WholeBody files (``foot_kpts``/``foot_valid``)
  and CMU's 23-point foot files are stored in ``coco_foot``: COCO's 17 then the 6 foot
  points, unlabelled (v = 0) for a person whose feet are not valid.
- every person annotation of an image becomes a stored person: keypoints ``(K, 3)`` x, y, v
  exactly as in the JSON (COCO pixel coordinates are already 0-based; v 0/1/2 as given),
  ``bbox``, ``area``, ``is_crowd`` and ``source_id`` = the annotation id. People with few (or
  no) labelled keypoints are kept too, so targets can be rendered for everyone; crowd
  annotations are stored with ``is_crowd=1`` and carry no keypoints to render.
- ignore regions (COCO compressed RLE) are what CMU's ``mask_miss`` masks out: the segmentation
  of every crowd annotation (reason ``'crowd'``) and of every person without a single labelled
  keypoint (reason ``'unlabelled'``), so the loss does not punish the network for finding
  people the annotation does not describe. A person without a usable segmentation falls back
  to its bounding box.
- the image bytes are stored exactly as read from disk; width/height come from the JSON and
  are checked against the decoded image (a missing file, undecodable bytes or a size mismatch
  skips the image with a reason in the summary instead of aborting).

Re-running on the same DB skips the images already stored, so an interrupted ingestion
(even ``kill -9``) resumes where its last committed transaction ended.
"""
from __future__ import annotations

import math
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..jsonio import read_json as _read_json
from .image import ImageDecodeError, image_size
from .ingest import IngestSummary
from .store import PoseDBError, PoseDBWriteError, PoseDBWriter

__all__ = ["CocoFormatError", "CocoKeypoints", "load_coco_keypoints", "annotation_people",
           "layout_name_from_file",
           "ingest_coco", "IngestSummary", "default_split", "decode_check", "rle_run_lengths",
           "read_json"]

NUM_COCO_KEYPOINTS = 17


class CocoFormatError(ValueError):
    """The annotation file is not a COCO person-keypoints JSON, or holds a bad record."""


class AnnotationError(CocoFormatError):
    """One malformed annotation; ``reason`` is the short category the summary counts."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def default_split(annotations_path: str) -> str:
    """Split name guessed from the annotation file name: 'train', 'val', else 'train'."""
    name = os.path.basename(str(annotations_path)).lower()
    if "train" in name:
        return "train"
    if "val" in name:
        return "val"
    return "train"


def _num(x, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise CocoFormatError(f"{what} must be a finite number, got {x!r}")
    return float(x)


class CocoKeypoints:
    """A COCO person-keypoints file, validated and indexed by image.

    Parameters
    ----------
    data : dict
        The parsed JSON. Use :func:`load_coco_keypoints` to read a file.
    source : str
        Name used in error messages (the file path).
    layout_name : str, optional
        Name of a custom layout (default: :func:`layout_name_from_file`).
    sigmas : list or dict, optional
        OKS sigmas of a custom layout (:func:`mxpose.skeleton.layout_from_category`).
    strict : bool
        Raise on the first malformed annotation (else skip it, see ``bad``).

    Attributes
    ----------
    images : list of dict
        The ``images`` records (``id``, ``file_name``, ``width``, ``height``) in file order.
    anns_by_image : dict int -> list of dict
        Person annotations of each image id, in file order.
    layout : Skeleton
        The stored layout, read from the keypoint category (see module doc).
    mode : {'plain', 'wholebody', 'foot23'}
        How a person's keypoints are read (:meth:`person_keypoints`).
    warnings : list of str
        What the layout inference assumed (default sigmas, added mirror limbs).
    bad : list of (reason, name, message)
        Malformed annotations left out (not ``strict``), e.g. keypoints of the wrong
        length, NaN or string coordinates, an unknown image id, an undecodable RLE.
    bad_boxes : dict int -> list of [x, y, w, h]
        The usable boxes of the left-out annotations of each image: stored as ignore
        regions, so the loss does not punish finding a person whose record was bad.

    Raises
    ------
    CocoFormatError
        When the structure is not COCO keypoints (or, ``strict``, an annotation is
        malformed), naming the image id / annotation id of the first bad record.
    """

    def __init__(self, data, source: str = "<json>", layout_name: Optional[str] = None,
                 sigmas=None, strict: bool = True):
        self.source = source
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
                or not isinstance(data.get("annotations"), list):
            raise CocoFormatError(f"{source}: not a COCO annotation file (needs 'images' and "
                                  f"'annotations' lists)")
        cats = data.get("categories")
        if not isinstance(cats, list):
            raise CocoFormatError(f"{source}: not a COCO annotation file (no 'categories' list)")
        kp_cats = self._read_layout(data, cats, source, layout_name, sigmas)
        self.images: List[dict] = []
        seen_names = set()
        for i, im in enumerate(data["images"]):
            iid = im.get("id") if isinstance(im, dict) else None
            where = f"{source}: image record #{i} (id {iid!r})"
            if not isinstance(im, dict):
                raise CocoFormatError(f"{where}: not an object")
            if not isinstance(iid, int) or isinstance(iid, bool):
                raise CocoFormatError(f"{where}: missing or non-integer 'id'")
            fn = im.get("file_name")
            if not isinstance(fn, str) or not fn:
                raise CocoFormatError(f"{where}: missing 'file_name'")
            w, h = im.get("width"), im.get("height")
            if not isinstance(w, int) or not isinstance(h, int) or w <= 0 or h <= 0:
                raise CocoFormatError(f"{where}: invalid width/height {w!r}x{h!r}")
            if fn in seen_names:
                raise CocoFormatError(f"{where}: file_name {fn!r} listed twice")
            seen_names.add(fn)
            self.images.append(im)
        sizes = {im["id"]: (im["height"], im["width"]) for im in self.images}
        if len(sizes) != len(self.images):
            raise CocoFormatError(f"{source}: duplicate image ids")
        self.anns_by_image: Dict[int, List[dict]] = {}
        self.bad: List[Tuple[str, str, str]] = []
        self.bad_boxes: Dict[int, List[list]] = {}
        for i, a in enumerate(data["annotations"]):
            if not isinstance(a, dict):
                raise CocoFormatError(f"{source}: annotation #{i} is not an object")
            if a.get("category_id") not in kp_cats:
                continue
            try:
                _check_annotation(a, sizes, source, self.file_keypoints,
                                  hint=" (a foot file holds COCO's 17 keypoints then the 6 "
                                       "foot points: 23)" if self.mode == "foot23" else "")
                if self.mode == "wholebody":
                    _check_feet(a, source)
            except AnnotationError as e:
                if strict:
                    raise
                self._leave_out(a, e, sizes)
                continue
            if not a.get("iscrowd") and _labelled(a) > 0:
                # Only crowd and unlabelled people need their outline (for the ignore mask);
                # dropping the polygons of everyone else saves a lot of memory on train2017.
                a.pop("segmentation", None)
            self.anns_by_image.setdefault(a["image_id"], []).append(a)

    def _read_layout(self, data, cats, source, layout_name, sigmas) -> set:
        """Set ``layout``, ``perm``, ``mode``, ``file_keypoints`` and ``warnings`` from the
        keypoint categories; return the ids of the categories to read."""
        from ..skeleton import SkeletonError, get_skeleton, layout_from_category
        kp_cats = [c for c in cats if isinstance(c, dict) and "keypoints" in c]
        if not kp_cats:
            raise CocoFormatError(f"{source}: not a COCO keypoints file (no category with "
                                  f"'keypoints' names; is this an instances_*.json or "
                                  f"captions file?)")
        name = layout_name or layout_name_from_file(source)
        self.warnings: List[str] = []
        found = []
        for c in kp_cats:
            try:
                found.append((c,) + layout_from_category(c, name, sigmas, source))
            except SkeletonError as e:
                raise CocoFormatError(str(e)) from None
        first = found[0]
        for c, sk, perm, _ in found[1:]:
            if sk != first[1] or not np.array_equal(perm, first[2]):
                raise CocoFormatError(
                    f"{source}: keypoint categories {first[0].get('name')!r} "
                    f"({first[1].num_keypoints} keypoints) and {c.get('name')!r} "
                    f"({sk.num_keypoints} keypoints) have different layouts; one DB holds "
                    f"one layout: split the file by category")
        _, self.layout, self.perm, w = first
        self.warnings += w
        self.file_keypoints = self.layout.num_keypoints
        self.mode = "plain"
        kp_anns = (a for a in data["annotations"] if isinstance(a, dict)
                   and isinstance(a.get("keypoints"), list))
        probe = next(kp_anns, None)
        if self.layout.name == "coco":
            if probe is not None and "foot_kpts" in probe:
                self.mode = "wholebody"
            elif (_is_foot_file(source)
                  or (probe is not None and len(probe["keypoints"]) == 3 * 23)):
                self.mode = "foot23"
                self.file_keypoints = 23
                if probe is not None and len(probe["keypoints"]) != 3 * 23:
                    # The whole file is of another kind, not one bad record: stop here.
                    raise CocoFormatError(
                        f"{source}: annotation id {probe.get('id')!r}: 'keypoints' must be a "
                        f"list of 69 numbers (23 keypoints x, y, v), got "
                        f"{len(probe['keypoints'])} (a foot file holds COCO's 17 keypoints "
                        f"then the 6 foot points: 23)")
            if self.mode != "plain":
                # COCO's 17 (in the file's order) then the 6 foot points, stored as is.
                self.perm = np.concatenate([self.perm, np.arange(17, 23)])
                self.layout = get_skeleton("coco_foot")
        self._identity = self.mode == "plain" and np.array_equal(
            self.perm, np.arange(self.layout.num_keypoints))
        return {c.get("id") for c in kp_cats}

    def person_keypoints(self, ann: dict) -> np.ndarray:
        """(K, 3) float32 x, y, v of an annotation in the stored layout: the file's
        points in the layout's order; a WholeBody file's ``foot_kpts`` appended where
        ``foot_valid`` (else the feet stay unlabelled, v = 0)."""
        kp = np.asarray(ann["keypoints"], dtype=np.float32).reshape(-1, 3)
        if self._identity:
            return kp       # the writer stores unlabelled rows as zeros
        if self.mode == "wholebody":
            feet = np.zeros((6, 3), np.float32)
            if ann.get("foot_valid"):
                feet = np.asarray(ann["foot_kpts"], dtype=np.float32).reshape(6, 3)
            kp = np.concatenate([kp, feet])
        kp = kp[self.perm]
        kp[kp[:, 2] <= 0] = 0.0
        return kp

    def _leave_out(self, a: dict, e: AnnotationError, sizes):
        name = f"annotation id {a.get('id')!r} (image id {a.get('image_id')!r})"
        self.bad.append((e.reason, name, str(e).split("): ", 1)[-1]))
        box = a.get("bbox")
        if a.get("image_id") in sizes and isinstance(box, list) and len(box) == 4 and all(
                type(v) in (int, float) and math.isfinite(v) for v in box) \
                and box[2] > 0 and box[3] > 0:
            self.bad_boxes.setdefault(a["image_id"], []).append([float(v) for v in box])

    def __len__(self):
        return len(self.images)

    @property
    def num_annotations(self) -> int:
        return sum(len(v) for v in self.anns_by_image.values())


def _labelled(ann: dict) -> int:
    """Number of labelled keypoints (v > 0); computed, not trusted from num_keypoints."""
    return sum(1 for v in ann["keypoints"][2::3] if v > 0)


def _check_feet(a: dict, source: str):
    """A COCO-WholeBody annotation's ``foot_kpts``: 6 points, checked when ``foot_valid``;
    :class:`AnnotationError` otherwise."""
    if not a.get("foot_valid"):
        return
    where = f"{source}: annotation id {a.get('id')!r} (image id {a.get('image_id')!r})"
    kp = a.get("foot_kpts")
    if not isinstance(kp, list) or len(kp) != 18:
        n = len(kp) if isinstance(kp, list) else kp
        raise AnnotationError("bad foot keypoints", f"{where}: 'foot_kpts' must be a list of "
                              f"18 numbers (6 foot points), got {n!r}")
    for j, v in enumerate(kp):
        try:
            _num(v, f"{where}: foot_kpts[{j}]")
        except CocoFormatError as e:
            raise AnnotationError("bad foot keypoints", str(e)) from None
        if j % 3 == 2 and v not in (0, 1, 2):
            raise AnnotationError("bad foot keypoints", f"{where}: visibility of foot point "
                                  f"{j // 3} is {v!r}, expected 0, 1 or 2")


def _is_foot_file(path: str) -> bool:
    """CMU's foot files are ``person_keypoints_{train,val}2017_foot_v1.json``: 'foot' as a
    word of the file name (not 'football')."""
    import re
    return re.search(r"(^|[^a-z])foot([^a-z]|$)",
                     os.path.basename(str(path)).lower()) is not None


def layout_name_from_file(path: str) -> str:
    """A custom layout's default name: the file name without split and year words
    (``my_dogs_train2017.json`` -> ``my_dogs``), so train and val files agree."""
    import re
    base = os.path.splitext(os.path.basename(str(path)))[0].lower()
    drop = {"train", "val", "valid", "validation", "test", "trainval", "person",
            "keypoints", "keypoint", "annotations", "annotation", "anns", "ann", "coco"}
    words = [w for w in re.split(r"[^a-z0-9]+", base)
             if w and w not in drop and not re.fullmatch(r"(train|val|test)?\d*", w)]
    return "_".join(words) or "custom"


def _check_annotation(a: dict, sizes: Dict[int, Tuple[int, int]], source: str,
                      num_keypoints: int = NUM_COCO_KEYPOINTS, hint: str = ""):
    """Raise :class:`AnnotationError` (reason + message naming the record) when ``a`` is
    not a usable person annotation of one of the images."""
    aid = a.get("id")
    iid = a.get("image_id")
    where = f"{source}: annotation id {aid!r} (image id {iid!r})"

    def bad(reason, msg):
        return AnnotationError(reason, f"{where}: {msg}")

    def num(v, what, reason):
        try:
            return _num(v, what)
        except CocoFormatError as e:
            raise AnnotationError(reason, f"{where}: {e}") from None

    if not isinstance(aid, int) or isinstance(aid, bool):
        raise bad("no integer id", "missing or non-integer 'id'")
    if not isinstance(iid, int) or iid not in sizes:
        raise bad("unknown image id", "refers to an image id not in 'images'")
    kp = a.get("keypoints")
    if not isinstance(kp, list) or len(kp) != 3 * num_keypoints:
        n = len(kp) if isinstance(kp, list) else kp
        raise bad("keypoints of the wrong length", f"'keypoints' must be a list of "
                  f"{3 * num_keypoints} numbers ({num_keypoints} keypoints x, y, v), got "
                  f"{n!r}{hint}")
    # Fast path first (train2017 has ~260k annotations); name the bad value only on failure.
    if not all(type(v) is int or (type(v) is float and math.isfinite(v)) for v in kp) \
            or not set(kp[2::3]) <= {0, 1, 2}:
        for j, v in enumerate(kp):
            num(v, f"keypoints[{j}]", "non-numeric or non-finite keypoints")
            if j % 3 == 2 and v not in (0, 1, 2):
                raise bad("bad visibility", f"visibility of keypoint {j // 3} is {v!r}, "
                          f"expected 0, 1 or 2")
    bbox = a.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise bad("bad bbox", f"'bbox' must be [x, y, w, h], got {bbox!r}")
    for v in bbox:
        num(v, "bbox", "bad bbox")
    if "area" in a:
        num(a["area"], "area", "bad area")
    if a.get("iscrowd", 0) not in (0, 1, True, False):
        raise bad("bad iscrowd", f"'iscrowd' must be 0 or 1, got {a.get('iscrowd')!r}")
    seg = a.get("segmentation")
    if a.get("iscrowd") and not isinstance(seg, dict):
        raise bad("bad segmentation", "a crowd annotation needs an RLE 'segmentation'")
    if isinstance(seg, dict):
        size = seg.get("size")
        if not isinstance(size, list) or size != list(sizes[iid]) or "counts" not in seg:
            raise bad("bad segmentation", f"RLE segmentation size {size!r} does not match "
                      f"the image's height, width {list(sizes[iid])}")
        _check_rle(seg["counts"], size[0] * size[1], bad)
    elif seg is not None and not isinstance(seg, list):
        raise bad("bad segmentation", "'segmentation' must be polygons or an RLE")
    elif seg and (a.get("iscrowd") or not any(v > 0 for v in kp[2::3])):
        # the outline becomes an ignore region: its numbers must be numbers
        for poly in seg:
            if not isinstance(poly, list) or not all(
                    type(v) in (int, float) and math.isfinite(v) for v in poly):
                raise bad("bad segmentation", "a polygon holds something other than finite "
                          "numbers")


def _check_rle(counts, pixels: int, bad):
    """An RLE's runs must decode and cover exactly the image (pycocotools trusts them)."""
    if isinstance(counts, list):
        ok = all(type(c) is int and c >= 0 for c in counts)
        total = sum(counts) if ok else -1
    elif isinstance(counts, str):
        try:
            total = sum(rle_run_lengths(counts))
        except ValueError as e:
            raise bad("undecodable RLE", f"RLE counts cannot be decoded ({e})") from None
    else:
        raise bad("undecodable RLE", f"RLE counts must be a string or a list, got "
                  f"{type(counts).__name__}")
    if total != pixels:
        raise bad("undecodable RLE", f"RLE runs cover {total} pixels, the image has {pixels}")


def read_json(path: str):
    """The parsed JSON of an annotation file; :class:`CocoFormatError` naming the file when
    it is missing, unreadable or not JSON."""
    return _read_json(path, "annotation file", CocoFormatError)


def load_coco_keypoints(path: str, layout_name: Optional[str] = None, sigmas=None,
                        strict: bool = True) -> CocoKeypoints:
    """Read and index a COCO person-keypoints JSON.

    Raises
    ------
    CocoFormatError
        Missing/unreadable file, invalid JSON, or not COCO keypoints (the message names it).
    """
    path = str(path)
    return CocoKeypoints(read_json(path), source=path, layout_name=layout_name,
                         sigmas=sigmas, strict=strict)


def _region_rle(ann: dict, height: int, width: int) -> dict:
    """The annotation's segmentation as one compressed RLE (bbox if it has no outline)."""
    from pycocotools import mask as mask_utils
    seg = ann.get("segmentation")
    rles = []
    if isinstance(seg, dict):
        counts = seg["counts"]
        if isinstance(counts, list):          # uncompressed RLE (COCO crowds)
            rles = [mask_utils.frPyObjects(seg, height, width)]
        else:
            rles = [{"size": [height, width],
                     "counts": counts.encode("ascii") if isinstance(counts, str) else counts}]
    elif isinstance(seg, list):
        # pycocotools needs >= 3 points per polygon; COCO has a few degenerate ones.
        polys = [[float(v) for v in p] for p in seg
                 if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
        if polys:
            rles = mask_utils.frPyObjects(polys, height, width)
    if not rles:
        x, y, w, h = (float(v) for v in ann["bbox"])
        box = np.array([[x, y, max(w, 1.0), max(h, 1.0)]], dtype=np.float64)
        rles = mask_utils.frPyObjects(box, height, width)
    rle = rles[0] if len(rles) == 1 else mask_utils.merge(rles, intersect=False)
    counts = rle["counts"]
    return {"size": [int(height), int(width)],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def annotation_people(anns: Sequence[dict], height: int, width: int,
                      keypoints_of: Optional[Callable[[dict], np.ndarray]] = None
                      ) -> Tuple[List[dict], List[dict]]:
    """People and ignore regions of one image.

    Parameters
    ----------
    anns : sequence of dict
        The image's COCO person annotations.
    height, width : int
        Image size (the RLE size).
    keypoints_of : callable, optional
        ``ann -> (K, 3)`` keypoints in the stored layout
        (:meth:`CocoKeypoints.person_keypoints`); default: the 17 COCO points as given.

    Returns
    -------
    people : list of dict
        One per annotation, for :meth:`PoseDBWriter.add_image`: ``keypoints`` (17, 3)
        float32 x, y, v as in the JSON, ``bbox``, ``area``, ``is_crowd``, ``source_id``.
    regions : list of dict
        Compressed RLEs ``{"size": [h, w], "counts": str, "reason": "crowd"|"unlabelled"}``.
    """
    people, regions = [], []
    for a in anns:
        crowd = bool(a.get("iscrowd", 0))
        kp = (keypoints_of(a) if keypoints_of is not None else
              np.asarray(a["keypoints"], dtype=np.float32).reshape(NUM_COCO_KEYPOINTS, 3))
        people.append({"keypoints": kp, "bbox": [float(v) for v in a["bbox"]],
                       "area": float(a["area"]) if "area" in a else None,
                       "is_crowd": int(crowd), "source_id": a["id"]})
        if crowd or not np.any(kp[:, 2] > 0):
            rle = _region_rle(a, height, width)
            rle["reason"] = "crowd" if crowd else "unlabelled"
            regions.append(rle)
    return people, regions


def rle_run_lengths(counts) -> List[int]:
    """Run lengths of a COCO compressed RLE string, decoded in Python.

    The string holds the runs (background first, column-major) as variable-length
    5-bit groups offset by 48, each run after the second stored as a difference to the
    run two before. Decoding here lets a checker verify that the runs are non-negative
    and cover exactly ``h * w`` pixels before handing the RLE to pycocotools, whose
    decoder trusts them.

    Raises
    ------
    ValueError
        A character outside the alphabet, a truncated group, or a negative run.
    """
    if isinstance(counts, (bytes, bytearray)):
        counts = counts.decode("ascii", errors="replace")
    runs: List[int] = []
    value, shift = 0, 0
    for ch in counts:
        c = ord(ch) - 48
        if not 0 <= c < 64:
            raise ValueError(f"invalid character {ch!r} in RLE counts")
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:
            continue
        if c & 0x10:
            value -= 1 << shift           # sign-extend the last group
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError(f"negative run length {value} at run {len(runs)}")
        runs.append(value)
        value, shift = 0, 0
    if shift:
        raise ValueError("truncated RLE counts")
    return runs


def decode_check(data: bytes, width: int, height: int) -> Optional[str]:
    """None if ``data`` decodes whole to a ``width`` x ``height`` image, else a skip
    reason ('corrupt image': undecodable or truncated; 'size mismatch').

    Sizes are in stored-pixel order (:mod:`mxpose.data.image`: EXIF orientation is not
    applied), the grid COCO's coordinates refer to.
    """
    return _size_problem(data, width, height)[0]


def _size_problem(data: bytes, width: int, height: int):
    """(reason, detail) of :func:`decode_check`, (None, '') when fine."""
    try:
        w, h = image_size(data)
    except ImageDecodeError as e:
        return "corrupt image", str(e)
    if (w, h) != (int(width), int(height)):
        return "size mismatch", f"file {w}x{h}, JSON {width}x{height}"
    return None, ""


def _read_and_check(path: str, width: int, height: int):
    """(bytes, None) or (None, (reason, detail)); runs in a worker thread."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, ("missing file", "")
    except OSError as e:
        return None, ("unreadable file", e.strerror or str(e))
    if not data:
        return None, ("corrupt image", "empty file")
    reason, detail = _size_problem(data, width, height)
    if reason:
        return None, (reason, detail)
    return data, None


def _ordered_map(fn, items: Sequence, workers: int) -> Iterator:
    """``map(fn, items)`` in order, ``workers`` threads ahead, bounded memory."""
    if workers <= 1:
        for it in items:
            yield fn(*it)
        return
    with ThreadPoolExecutor(workers) as ex:
        window = deque()
        it = iter(items)
        for _ in range(2 * workers):
            nxt = next(it, None)
            if nxt is None:
                break
            window.append(ex.submit(fn, *nxt))
        while window:
            res = window.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                window.append(ex.submit(fn, *nxt))
            yield res


def ingest_coco(annotations, images_dir: str, out: str, split: Optional[str] = None,
                limit: Optional[int] = None, keep_empty: bool = False, workers: int = 4,
                commit_every: int = 64, progress: bool = True, tool: str = "coco_parse",
                args: Optional[dict] = None,
                on_image: Optional[Callable[[str], None]] = None,
                allow_source_change: bool = False, layout_name: Optional[str] = None,
                sigmas=None, strict: bool = False) -> IngestSummary:
    """Ingest a COCO person-keypoints file into a pose DB (resumable).

    A malformed annotation is left out with its reason (its box, when usable, becomes an
    ignore region), an unusable image is skipped, labelled keypoints far outside the
    image are warned about; all are counted in the summary and listed in
    ``<out>.skipped.json`` (:mod:`mxpose.data.ingest`).

    Parameters
    ----------
    annotations : str or CocoKeypoints
        The JSON path, or an already loaded :class:`CocoKeypoints`.
    images_dir : str
        Folder holding the images named by ``file_name``.
    out : str
        DB path; created if absent, else continued (images already stored are skipped).
    split : str, optional
        Split name for every image; default from the annotation file name
        (:func:`default_split`).
    limit : int, optional
        Consider only the first ``limit`` images (in file order, after dropping images
        without people unless ``keep_empty``): re-running with the same limit is a no-op.
    keep_empty : bool
        Also store images without person annotations (default: skip and count them).
    workers : int
        Threads reading and decoding images ahead of the (single) writer.
    commit_every : int
        Images per transaction (what an interruption can lose and a re-run redoes).
    progress : bool
        Show a tqdm progress bar.
    tool, args : str, dict
        Provenance recorded in the DB's meta.
    on_image : callable, optional
        Called with the file name after each image is stored (a hook for tools and tests).
    allow_source_change : bool
        Continue a DB started from another version of the annotation file (its SHA-256
        is recorded in the DB; default: refuse).
    layout_name : str, optional
        Name of a custom layout (default: from the file name, :func:`layout_name_from_file`).
    sigmas : list or dict, optional
        OKS sigmas of a custom layout (see :func:`mxpose.skeleton.layout_from_category`).
    strict : bool
        Abort on the first malformed annotation (:class:`CocoFormatError`) instead.

    Returns
    -------
    IngestSummary
    """
    t0 = time.perf_counter()
    coco = annotations if isinstance(annotations, CocoKeypoints) \
        else load_coco_keypoints(annotations, layout_name=layout_name, sigmas=sigmas,
                                 strict=strict)
    if split is None:
        split = default_split(coco.source)
    if not os.path.isdir(images_dir):
        raise CocoFormatError(f"image folder {images_dir} does not exist")
    summary = IngestSummary()
    for reason, name, message in coco.bad:
        summary.skip(reason, name, message)
    todo = []
    for im in coco.images:
        if not keep_empty and not coco.anns_by_image.get(im["id"]) \
                and not coco.bad_boxes.get(im["id"]):
            summary.empty_skipped += 1
            continue
        todo.append(im)
    if limit is not None:
        todo = todo[:max(0, int(limit))]
    args = dict(args or {})
    sources = [coco.source] if os.path.isfile(coco.source) else []
    with PoseDBWriter(out, dataset="coco", skeleton=coco.layout, tool=tool, args=args,
                      commit_every=commit_every, sources=sources,
                      allow_source_change=allow_source_change) as writer:
        new = []
        for im in todo:
            if writer.has_image(im["file_name"]):
                summary.already_stored += 1
            else:
                new.append(im)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(new), unit="img", desc="coco", dynamic_ncols=True)
        jobs = [(os.path.join(images_dir, im["file_name"]), im["width"], im["height"])
                for im in new]
        try:
            for im, (data, why) in zip(new, _ordered_map(_read_and_check, jobs, workers)):
                name = im["file_name"]
                if why is not None:
                    summary.skip(why[0], name, why[1])
                else:
                    people, regions = annotation_people(coco.anns_by_image.get(im["id"], ()),
                                                        im["height"], im["width"],
                                                        coco.person_keypoints)
                    for box in coco.bad_boxes.get(im["id"], ()):
                        rle = _region_rle({"bbox": box}, im["height"], im["width"])
                        regions.append(dict(rle, reason="invalid annotation"))
                    try:
                        writer.add_image(name, data, im["width"], im["height"], split,
                                         people=people, ignore_rles=regions,
                                         source_id=im["id"])
                    except PoseDBWriteError:
                        raise                  # disk full / busy: the run cannot go on
                    except PoseDBError as e:
                        if strict:
                            raise
                        summary.skip("rejected by the store", name, str(e))
                    else:
                        summary.check_people(name, people, im["width"], im["height"])
                        summary.written += 1
                        summary.people += len(people)
                        summary.regions += len(regions)
                        if on_image is not None:
                            on_image(name)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    summary.seconds = time.perf_counter() - t0
    summary.write_report(out)
    return summary
