"""MPII Human Pose: parse the release .mat and ingest it into the pose store.

The MPII release ships one MATLAB file, ``mpii_human_pose_v1_u12_1.mat``, holding the
struct ``RELEASE``:

- ``annolist`` (1 x N struct): ``image.name``; ``annorect`` (1 x P struct, one per person:
  head box ``x1 y1 x2 y2``, ``scale`` (person height / 200 px), ``objpos.x/.y`` (rough
  person centre), ``annopoints.point`` (1 x J struct: ``x``, ``y``, ``id`` 0..15,
  ``is_visible``)); ``frame_sec``; ``vididx``.
- ``img_train`` (1 x N, 1 = train image, 0 = test image), ``single_person`` (N x 1 cell of
  annorect indices), ``act`` (N x 1 struct: ``cat_name``, ``act_name``, ``act_id``),
  ``video_list`` (cell of YouTube ids), ``version``.

All coordinates in the file are MATLAB 1-based; :func:`parse_release` returns them
0-based (x - 1, y - 1 for joints, head box and objpos), as everything after ingestion
uses. Every index this module returns (annolist index, person index, ``single_person``,
``video_index``) is 0-based as well.

How the file's irregularities are read
--------------------------------------
- ``is_visible`` comes as a number, a string ``'0'``/``'1'``, or empty. 1 -> v = 2
  (visible), 0 -> v = 1 (labelled but occluded). Empty means the annotator placed the
  joint without saying whether it is visible (it happens mostly for the head joints,
  which are nearly always in view): the joint is labelled and treated as visible, v = 2,
  as CMU's converter treats a missing flag.
- A joint absent from ``annopoints.point`` is unlabelled (v = 0, x = y = 0).
- A person (annorect element) with no joints but with ``scale``/``objpos`` (test-set
  people, and the few unannotated people of training images) is kept with
  ``num_keypoints`` 0: evaluation needs their centre and scale, and training decides what
  to do with them (the person-centred sampler skips people below ``aug.min_keypoints``).
- A person with no field carrying data at all (a struct with no fields, or all fields
  empty) holds nothing and is dropped; the remaining people keep their original annorect
  index as ``source_id``, so ``single_person`` stays valid.
- ``annorect`` may be empty (an image with nobody annotated): the image is skipped, since
  storing it would teach a network that whoever is in it is background.
- MATLAB 1-element arrays come back as scalars, 1-element struct arrays as a single struct
  (loadmat's ``squeeze_me``); both shapes are accepted everywhere.
- A malformed record (joint id outside 0..15, a non-numeric or non-finite coordinate,
  a missing image name) is reported with the annolist index and skipped; parsing goes on.

Ingestion (:func:`ingest_mpii`) stores the original image bytes untouched, takes width and
height from the JPEG header (checked against a cheap 1/8-scale decode, which also rejects
undecodable files), is resumable (images already in the DB are skipped) and never aborts
on one bad image: each skip is counted with its reason in the returned
:class:`~mxpose.data.ingest.IngestSummary`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
from typing import Callable, Dict, Iterable, Iterator, Optional

import numpy as np

from ..skeleton import get_skeleton
from .image import ImageDecodeError, image_size
from .ingest import IngestSummary
from .store import PoseDBError, PoseDBWriteError, PoseDBWriter

__all__ = ["MPIIError", "IngestSummary", "load_release", "parse_release", "assign_split",
           "read_val_list", "image_size", "ingest_mpii", "MPII_URL", "DEFAULT_ANNOTATIONS",
           "DEFAULT_IMAGES", "DEFAULT_OUT"]

MPII_URL = "http://human-pose.mpi-inf.mpg.de/"
# Where the unpacked release lands when following the README (relative to the current dir):
# mpii_human_pose_v1_u12_2.zip -> data/mpii/mpii_human_pose_v1_u12_2/, and
# mpii_human_pose_v1.tar.gz -> data/mpii/images/.
DEFAULT_ANNOTATIONS = os.path.join("data", "mpii", "mpii_human_pose_v1_u12_2",
                                   "mpii_human_pose_v1_u12_1.mat")
DEFAULT_IMAGES = os.path.join("data", "mpii", "images")
DEFAULT_OUT = os.path.join("data", "mpii.db")    # config default data.db

NUM_JOINTS = 16

# Skip reasons, as they appear in the report.
SKIP_BAD = "bad annotation"
SKIP_NO_PEOPLE = "no people annotated"
SKIP_TEST = "test image (not requested)"
SKIP_DUPLICATE = "listed twice in the annotations"
SKIP_MISSING = "image missing on disk"
SKIP_UNREADABLE = "image unreadable"
SKIP_UNDECODABLE = "image undecodable"
SKIP_INVALID = "rejected by the store"


class MPIIError(ValueError):
    """The annotation file is missing, unreadable or not an MPII release."""


# ---------------------------------------------------------------------------------------
# Reading loadmat's values (squeeze_me=True, struct_as_record=False)
# ---------------------------------------------------------------------------------------
def _is_empty(v) -> bool:
    if v is None:
        return True
    if isinstance(v, np.ndarray):
        return v.size == 0
    if isinstance(v, (str, bytes)):
        return len(v.strip()) == 0
    return False


def _items(v) -> list:
    """A struct array / cell array as a list: empty -> [], a squeezed scalar -> [v]."""
    if v is None:
        return []
    if isinstance(v, np.ndarray):
        if v.size == 0:
            return []
        return list(v.ravel(order="F"))
    return [v]


def _field(s, name):
    """Field of a mat_struct, None when the struct lacks it or it is empty."""
    if s is None or isinstance(s, np.ndarray):
        return None
    v = getattr(s, name, None)
    return None if _is_empty(v) else v


def _num(v, what: str) -> Optional[float]:
    """A scalar number (None when empty); MATLAB stores some as uint8/uint16 or strings."""
    if _is_empty(v):
        return None
    if isinstance(v, np.ndarray):
        if v.size != 1:
            raise MPIIError(f"{what}: expected one number, got an array of shape {v.shape}")
        v = v.reshape(-1)[0]
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise MPIIError(f"{what}: expected a number, got {v!r}") from None
    if not math.isfinite(x):
        raise MPIIError(f"{what}: not finite ({x})")
    return x


def _text(v) -> Optional[str]:
    if _is_empty(v):
        return None
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size == 1 else "".join(str(c) for c in v.ravel())
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return str(v).strip()


def _visibility(v, what: str) -> float:
    """MPII ``is_visible`` -> store visibility: 1 -> 2, 0 -> 1, empty -> 2 (see module doc)."""
    if _is_empty(v):
        return 2.0
    if isinstance(v, (str, bytes)) or (isinstance(v, np.ndarray) and v.dtype.kind in "US"):
        t = _text(v)
        if t not in ("0", "1"):
            raise MPIIError(f"{what}: is_visible {t!r} is neither '0' nor '1'")
        return 2.0 if t == "1" else 1.0
    x = _num(v, what)
    if x not in (0.0, 1.0):
        raise MPIIError(f"{what}: is_visible {x} is neither 0 nor 1")
    return 2.0 if x == 1.0 else 1.0


def load_release(path: str):
    """Load ``RELEASE`` from the MPII .mat.

    Returns the ``RELEASE`` mat_struct as read by ``scipy.io.loadmat(path,
    struct_as_record=False, squeeze_me=True)``. Raises :class:`MPIIError` naming the file
    when it is missing, unreadable or has no ``RELEASE`` with ``annolist`` and ``img_train``.
    """
    import scipy.io

    if not os.path.isfile(path):
        raise MPIIError(f"MPII annotation file {path} does not exist")
    try:
        mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True,
                               variable_names=["RELEASE"])
    except Exception as e:   # scipy raises several types for a bad file
        raise MPIIError(f"{path} is not a readable MATLAB file ({type(e).__name__}: {e})") \
            from None
    rel = mat.get("RELEASE")
    if rel is None or not hasattr(rel, "_fieldnames"):
        raise MPIIError(f"{path} has no RELEASE struct; is it mpii_human_pose_v1_u12_1.mat?")
    for f in ("annolist", "img_train"):
        if f not in rel._fieldnames:
            raise MPIIError(f"{path}: RELEASE lacks the field {f!r}")
    return rel


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------
_VIS = {1.0: 2.0, 0.0: 1.0}                  # is_visible -> store v
_JOINT_IDS = frozenset(float(j) for j in range(NUM_JOINTS))


def _fnum(v) -> Optional[float]:
    """float(v) for a finite plain scalar, else None (the careful path then decides)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _read_point(p, kp: np.ndarray, where: str):
    """Careful reading of one annopoints.point element into ``kp``; raises MPIIError."""
    jid = _num(_field(p, "id"), f"{where}, joint id")
    if jid is None or jid != int(jid) or not 0 <= jid < NUM_JOINTS:
        raise MPIIError(f"{where}: joint id {jid if jid is None else format(jid, 'g')} "
                        f"is not one of 0..{NUM_JOINTS - 1}")
    j = int(jid)
    wj = f"{where}, joint {j}"
    if kp[j, 2] > 0:
        raise MPIIError(f"{wj} is given twice")
    x, y = _num(_field(p, "x"), f"{wj} x"), _num(_field(p, "y"), f"{wj} y")
    if x is None or y is None:
        raise MPIIError(f"{wj} has no coordinates")
    kp[j] = (x - 1.0, y - 1.0, _visibility(getattr(p, "is_visible", None), wj))


def _parse_person(rect, where: str) -> Optional[dict]:
    """One annorect element -> person dict for the store, or None when it holds nothing."""
    fields = getattr(rect, "_fieldnames", None) or []
    if not any(not _is_empty(getattr(rect, f, None)) for f in fields):
        return None
    kp = np.zeros((NUM_JOINTS, 3), dtype=np.float32)
    annopoints = _field(rect, "annopoints")
    points = _items(_field(annopoints, "point")) if annopoints is not None else []
    for p in points:
        # Fast path for the common case (plain numbers or '0'/'1', valid id); anything
        # unusual goes through the careful reader, which also words the errors.
        x, y = _fnum(getattr(p, "x", None)), _fnum(getattr(p, "y", None))
        jid = _fnum(getattr(p, "id", None))
        vis = _VIS.get(_fnum(getattr(p, "is_visible", None)))
        if (x is None or y is None or vis is None or jid not in _JOINT_IDS
                or kp[int(jid), 2] > 0):
            _read_point(p, kp, where)
        else:
            kp[int(jid)] = (x - 1.0, y - 1.0, vis)
    head = [_num(_field(rect, k), f"{where}, head box {k}") for k in ("x1", "y1", "x2", "y2")]
    head_box = None if any(v is None for v in head) else tuple(v - 1.0 for v in head)
    objpos = _field(rect, "objpos")
    cx = _num(_field(objpos, "x"), f"{where}, objpos.x")
    cy = _num(_field(objpos, "y"), f"{where}, objpos.y")
    center = None if cx is None or cy is None else (cx - 1.0, cy - 1.0)
    scale = _num(_field(rect, "scale"), f"{where}, scale")
    if scale is not None and scale <= 0:
        raise MPIIError(f"{where}: scale {scale} is not positive")
    return {"keypoints": kp, "head_box": head_box, "scale": scale, "center": center}


def _image_extra(tables: dict, i: int, item) -> dict:
    """Per-image extras that exist in the file: act, single_person, frame_sec, video.

    ``tables`` holds RELEASE's per-image arrays as lists, built once by the caller
    (``act``, ``single_person``: one entry per image, or None; ``video_list``)."""
    extra: Dict[str, object] = {"annolist_index": i}
    where = f"annolist[{i}]"
    fs = _num(_field(item, "frame_sec"), f"{where}.frame_sec")
    if fs is not None:
        extra["frame_sec"] = fs
    vid = _num(_field(item, "vididx"), f"{where}.vididx")
    if vid is not None:
        extra["video_index"] = int(vid) - 1
        videos = tables["video_list"]
        if 0 <= int(vid) - 1 < len(videos):
            extra["video_id"] = _text(videos[int(vid) - 1])
    if tables["act"] is not None:
        a = tables["act"][i]
        act_id = _num(_field(a, "act_id"), f"act[{i}].act_id")
        act = {"cat_name": _text(_field(a, "cat_name")),
               "act_name": _text(_field(a, "act_name")),
               "act_id": None if act_id is None else int(act_id)}
        # act_id -1 with empty names is the file's "no activity label".
        if act["cat_name"] or act["act_name"] or act["act_id"] not in (None, -1):
            extra["act"] = act
    if tables["single_person"] is not None:
        extra["single_person"] = [int(_num(s, f"single_person[{i}]")) - 1
                                  for s in _items(tables["single_person"][i])]
    return extra


def parse_release(release, limit: Optional[int] = None) -> Iterator[dict]:
    """Turn ``RELEASE`` into plain per-image records, in annolist order.

    Parameters
    ----------
    release : str or mat_struct
        Path of the .mat, or what :func:`load_release` returned.
    limit : int, optional
        Stop after this many annolist entries.

    Yields
    ------
    dict
        ``index`` (0-based annolist index), ``file_name``, ``is_train`` (bool),
        ``people`` (list of dicts: ``keypoints`` (16, 3) float32 x, y, v in MPII id
        order, 0-based; ``head_box`` (x1, y1, x2, y2) or None; ``scale`` or None;
        ``center`` (x, y) objpos or None; ``source_id`` the 0-based annorect index),
        ``dropped`` (people dropped for holding no data), ``extra`` (``annolist_index``
        and, where the file has them, ``act``, ``single_person``, ``frame_sec``,
        ``video_index``, ``video_id``), and ``error``: None, or a message naming the
        record when it is malformed (the other fields may then be incomplete).
    """
    rel = load_release(release) if isinstance(release, (str, os.PathLike)) else release
    annolist = _items(getattr(rel, "annolist", None))
    img_train = np.atleast_1d(np.asarray(getattr(rel, "img_train", []), dtype=np.float64))
    n = len(annolist)
    if img_train.size != n:
        raise MPIIError(f"RELEASE.img_train has {img_train.size} entries, annolist {n}")
    tables = {"video_list": _items(_field(rel, "video_list"))}
    for key in ("act", "single_person"):
        v = _items(_field(rel, key))
        tables[key] = v if len(v) == n else None      # absent or not one per image
    for i, item in enumerate(annolist[:limit] if limit is not None else annolist):
        rec = {"index": i, "file_name": None, "is_train": bool(img_train[i] == 1),
               "people": [], "dropped": 0, "extra": {"annolist_index": i}, "error": None}
        try:
            name = _text(_field(_field(item, "image"), "name"))
            if not name:
                raise MPIIError(f"annolist[{i}] has no image.name")
            rec["file_name"] = name
            for j, rect in enumerate(_items(getattr(item, "annorect", None))):
                p = _parse_person(rect, f"annolist[{i}] ({name}), person {j}")
                if p is None:
                    rec["dropped"] += 1
                    continue
                p["source_id"] = str(j)
                rec["people"].append(p)
            rec["extra"] = _image_extra(tables, i, item)
        except MPIIError as e:
            rec["error"] = str(e)
        yield rec


# ---------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------
def _unit_hash(file_name: str, seed: int) -> float:
    """A deterministic number in [0, 1) per (seed, file name), the same on every machine."""
    h = hashlib.sha1(f"{int(seed)}:{file_name}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


def assign_split(file_name: str, is_train: bool, val_fraction: float = 0.0,
                 val_names: Iterable[str] = (), seed: int = 0) -> str:
    """``'train'``, ``'val'`` or ``'test'`` for one image.

    Test images (``img_train == 0``) are always ``'test'``. A training image is ``'val'``
    when listed in ``val_names`` or when its seeded hash falls below ``val_fraction``
    (so about that fraction of the training images, the same ones on every run).
    """
    if not is_train:
        return "test"
    if file_name in val_names:
        return "val"
    if val_fraction > 0 and _unit_hash(file_name, seed) < val_fraction:
        return "val"
    return "train"


def read_val_list(path: str) -> frozenset:
    """File names one per line (blank lines and ``#`` comments ignored)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except OSError as e:
        raise MPIIError(f"cannot read the validation list {path}: {e.strerror}") from None
    return frozenset(ln for ln in lines if ln and not ln.startswith("#"))


# ---------------------------------------------------------------------------------------
# Ingestion
# ---------------------------------------------------------------------------------------
def ingest_mpii(annotations, images: str, out: str, *, val_fraction: float = 0.0,
                val_list: Optional[str] = None, seed: int = 0, include_test: bool = False,
                limit: Optional[int] = None, commit_every: int = 64, progress: bool = False,
                tool: str = "mpi_parse", args: Optional[dict] = None,
                on_image: Optional[Callable[[str], None]] = None,
                allow_source_change: bool = False, strict: bool = False) -> IngestSummary:
    """Ingest the MPII release into a pose DB (``dataset='mpii'``, ``skeleton='mpii'``).

    Parameters
    ----------
    annotations : str or mat_struct
        The release .mat, or a loaded ``RELEASE``.
    images : str
        Folder holding the images named in ``annolist.image.name``.
    out : str
        The DB; created if absent, continued if it holds an earlier (partial) run.
    val_fraction, val_list, seed
        Hold out training images as split ``'val'`` (see :func:`assign_split`).
        The options are recorded in the DB; continuing it with other options raises
        :class:`MPIIError`, since the stored images would follow the old split.
    include_test : bool
        Also store the test images (``img_train == 0``) as split ``'test'``: people with
        centre and scale but no joints, for evaluation-time cropping.
    limit : int, optional
        Consider only the first ``limit`` selected images (same ones on every run).
    commit_every : int
        Images per transaction.
    progress : bool
        Show a tqdm bar.
    on_image : callable, optional
        Called with each file name after it is stored (used by tests to slow a run).
    allow_source_change : bool
        Continue a DB started from another version of the .mat (its SHA-256 is recorded
        in the DB; default: refuse).
    strict : bool
        Raise :class:`MPIIError` on the first malformed record instead of skipping it.

    Bad records and images are skipped with their reason, labelled joints far outside
    the image are warned about; the summary counts them and ``<out>.skipped.json`` lists
    them all (:mod:`mxpose.data.ingest`).

    Returns
    -------
    IngestSummary
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise MPIIError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    val_names = read_val_list(val_list) if val_list else frozenset()
    if not os.path.isdir(images):
        raise MPIIError(f"MPII image folder {images} does not exist")
    rel = load_release(annotations) if isinstance(annotations, (str, os.PathLike)) \
        else annotations
    n = len(_items(rel.annolist))
    # The seed only matters with a fraction; leave it out otherwise so it cannot clash.
    split_cfg = {"val_fraction": float(val_fraction),
                 "seed": int(seed) if val_fraction > 0 else None,
                 "val_list_sha1": hashlib.sha1("\n".join(sorted(val_names)).encode()).hexdigest()
                 if val_names else None}
    old = _stored_meta(out, "mpii_split")
    if old is not None and old != split_cfg:
        raise MPIIError(f"{out} was written with split options {old}; continue it with the "
                        f"same options or write a new DB (asked for {split_cfg})")
    report = IngestSummary()
    t0 = time.perf_counter()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    sources = [os.fspath(annotations)] if isinstance(annotations, (str, os.PathLike)) else []
    writer = PoseDBWriter(out, dataset="mpii", skeleton=get_skeleton("mpii"), tool=tool,
                          args=args or {}, commit_every=commit_every, sources=sources,
                          allow_source_change=allow_source_change)
    seen = set()
    bar = None
    try:
        if old is None:
            writer.set_meta("mpii_split", split_cfg)
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=n, unit="img", desc="mpii", dynamic_ncols=True)
        selected = 0
        for rec in parse_release(rel):
            if limit is not None and selected >= limit:
                break
            _tick(bar)
            name = rec["file_name"]
            label = name or f"annolist[{rec['index']}]"
            if rec["error"] is not None:
                if strict:
                    raise MPIIError(rec["error"])
                report.skip(SKIP_BAD, label, rec["error"].split(": ", 1)[-1])
                continue
            split = assign_split(name, rec["is_train"], val_fraction, val_names, seed)
            if split == "test" and not include_test:
                report.skip(SKIP_TEST, label)
                continue
            selected += 1
            if name in seen:
                report.skip(SKIP_DUPLICATE, label, f"annolist[{rec['index']}]")
                continue
            seen.add(name)
            if not rec["people"]:
                report.skip(SKIP_NO_PEOPLE, label, f"annolist[{rec['index']}]")
                continue
            if writer.has_image(name):
                report.already_stored += 1
                continue
            path = os.path.join(images, name)
            if not os.path.isfile(path):
                report.skip(SKIP_MISSING, name, path)
                continue
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                report.skip(SKIP_UNREADABLE, name, f"{path}: {e.strerror}")
                continue
            try:
                size = image_size(data)
            except ImageDecodeError as e:
                report.skip(SKIP_UNDECODABLE, name, f"{path}: {e}")
                continue
            try:
                writer.add_image(name, data, size[0], size[1], split, people=rec["people"],
                                 source_id=rec["index"], extra=rec["extra"])
            except PoseDBWriteError:
                raise                    # disk full / busy: the run cannot go on
            except PoseDBError as e:
                if strict:
                    raise
                report.skip(SKIP_INVALID, name, str(e))
                continue
            report.check_people(name, rec["people"], size[0], size[1])
            report.written += 1
            report.people += len(rec["people"])
            report.people_dropped += rec["dropped"]
            report.split_counts[split] = report.split_counts.get(split, 0) + 1
            if on_image is not None:
                on_image(name)
        if val_names:
            listed = {_text(_field(_field(item, "image"), "name"))
                      for item in _items(rel.annolist)}
            report.val_list_unknown = sorted(val_names - listed)
    finally:
        if bar is not None:
            bar.close()
        writer.close(commit=True)
        report.seconds = time.perf_counter() - t0
    report.write_report(out)
    return report


def _stored_meta(path: str, key: str):
    """A meta value of an existing DB (None if the DB, its meta table or the key is absent).

    A plain read-write connection, so a WAL left by a killed run is recovered first."""
    if not os.path.isfile(path):
        return None
    try:
        con = sqlite3.connect(path)
        try:
            row = con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return None          # not a DB or no meta table: PoseDBWriter reports it properly
    return None if row is None else json.loads(row[0])


def _tick(bar):
    if bar is not None:
        bar.update(1)
