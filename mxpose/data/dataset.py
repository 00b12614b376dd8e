"""``PoseDataset``: stored image + people -> augmented training sample with targets.

Each item is ``(image, heatmaps, heat_mask, pafs, paf_mask)``, float32:

=========== ================= =====================================================
image       (3, S, S)          BGR, ``(v - 128) / 256``
heatmaps    (K+1, S/s, S/s)    Gaussian per keypoint, background last
heat_mask   (1, S/s, S/s)      1 = supervise (the loss broadcasts it over channels)
pafs        (2L, S/s, S/s)     limb l: x at 2l, y at 2l+1
paf_mask    (1, S/s, S/s)      the same array as heat_mask
=========== ================= =====================================================

with S the crop size (``aug.input_size``), s the stride, K and L from the network's
skeleton (``data.skeleton``); the DB's own layout is converted to it
(:func:`mxpose.skeleton.convert`).

Multi-process and multi-thread loading
    gluon's DataLoader forks its worker pool when it is constructed, so nothing may be
    open then: the constructor closes the DB connection it used to build the index, and
    :class:`~mxpose.data.store.PoseDB` reopens one lazily per process and thread (and
    drops it when pickled, for spawn). The target renderer (which owns its buffers) and
    the random generator are per process and thread as well, so ``thread_pool=True``
    loaders do not share them.

Randomness
    :meth:`PoseDataset.get` with an explicit ``seed`` draws the sample's augmentation
    from that seed alone (what :func:`mxpose.data.loader.make_loader` does: every sample
    of every epoch has its own seed, whatever worker serves it). ``dataset[i]`` draws
    from the calling thread's generator: seeded from ``seed`` alone in the thread and
    process that built the dataset, and from ``(seed, pid, thread)`` anywhere else, so
    workers never repeat each other's augmentation; :meth:`reseed` sets it.

Bad records
    A record that cannot be read (undecodable or truncated image bytes, an image whose
    decoded size disagrees with the DB, malformed keypoints, non-finite coordinates) is
    skipped with a logged warning naming the record and the next sample is served in its
    place: never a dead worker, never a silent zero sample. Each process counts its skips
    in ``skipped``; :meth:`get` also returns the count per call, which the loader sums up
    in the main process.

Decoding
    By :func:`mxpose.data.image.decode_image` (EXIF not applied, truncated bytes
    rejected; JPEGs by Pillow), at 1/2 or 1/4 size through DCT scaling when the drawn
    scale leaves at least one decoded pixel per crop pixel. Pixel ``q`` of an image
    decoded at 1/r covers original pixels ``r*q .. r*q + r - 1``, so it is
    original pixel ``r*q + (r-1)/2``: the affine keeps mapping original coordinates and
    the keypoints and targets do not depend on the decode.
"""
from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
from typing import Optional

import cv2
import numpy as np

from ..config import ConfigError, default_config
from ..skeleton import SkeletonError, convert, get_skeleton
from .image import decode_image
from .store import PoseDB, PoseDBError
from .transforms import (Augmenter, crop_region, normalize_image, person_scales_centers,
                         select_main_people, sample_affine)

__all__ = ["PoseDataset", "resolve_skeleton", "is_auto"]

log = logging.getLogger(__name__)

try:  # gluon's Dataset is a plain base class; keep the module importable without mxnet
    from mxnet.gluon.data import Dataset as _Base
except ImportError:  # pragma: no cover - mxnet is a hard requirement of the trainer only
    _Base = object

# What a broken record raises on its way through _load (a bug elsewhere still raises).
_RECORD_ERRORS = (PoseDBError, ValueError, OSError, cv2.error, sqlite3.DatabaseError,
                  SkeletonError)


def _reduce_factor(scale: float) -> int:
    """Largest JPEG DCT reduction (1, 2, 4) that still leaves >= 1 source px per crop px."""
    for r in (4, 2):
        if scale * r <= 1.0:
            return r
    return 1


def is_auto(spec) -> bool:
    """True for ``data.skeleton: auto`` (take the DB's stored layout)."""
    return isinstance(spec, str) and spec == "auto"


def resolve_skeleton(cfg, db_path: Optional[str] = None, check: bool = True):
    """The layout the network predicts, from ``cfg.data.skeleton``.

    ``auto`` takes the layout stored in the DB (``db_path``, default ``cfg.data.db``) and
    writes its full definition back into ``cfg.data.skeleton``, so the run's saved config
    (and every checkpoint, demo, evaluation and export made from it) carries the layout
    without the DB. With ``check``, a layout whose limbs leave keypoints unconnected is
    refused (:func:`mxpose.skeleton.check_connected`), proposing limbs measured on the
    DB's people.

    Raises
    ------
    SkeletonError, PoseDBError
    """
    from ..skeleton import check_connected
    spec = cfg.data.skeleton
    db = None
    if is_auto(spec):
        path = db_path or cfg.data.db
        if not path or not os.path.isfile(str(path)):
            raise SkeletonError(f"data.skeleton is 'auto' (the DB's layout) but the DB "
                                f"{path!r} does not exist; set data.db or name a layout")
        db = PoseDB(str(path))
        skel = db.skeleton
        from easydict import EasyDict
        cfg.data.skeleton = EasyDict(skel.to_dict())
    else:
        skel = get_skeleton(spec)
    if check:
        try:
            check_connected(skel)
        except SkeletonError:
            people = None
            path = db_path or cfg.data.db
            if db is None and path and os.path.isfile(str(path)):
                db = PoseDB(str(path))
            if db is not None:
                ids = db.image_ids()[:2000]
                kp = [db.people(int(i))["keypoints"] for i in ids]
                kp = [k for k in kp if k.shape[1:] == (db.skeleton.num_keypoints, 3)]
                if kp and db.skeleton == skel:
                    people = np.concatenate(kp)
            check_connected(skel, people)
    if db is not None:
        db.close()
    return skel


class _Local(threading.local):
    pid = None
    rng = None
    renderer = None
    crop = None      # reused warp output (consumed by normalisation within the call)


class PoseDataset(_Base):
    """Training/validation samples from a pose DB.

    Parameters
    ----------
    db_path : str
        A pose DB written by one of the ingestion tools.
    split : str
        Split name (``train``, ``val``, ...).
    skeleton : str, dict or Skeleton, optional
        Layout the network predicts (default: ``config.data.skeleton``).
    config : EasyDict, optional
        Full config (``aug``, ``targets``, ``data`` sections are used).
    train : bool
        Random augmentation when True; a deterministic centred crop otherwise.
    sample_per : {'person', 'image'}, optional
        One sample per CMU "main person" (default) or one per image (centred on its
        largest person).
    seed : int, optional
        Base seed (default ``config.train.seed``).
    max_items : int, optional
        Keep only the first ``max_items`` samples (quick runs and tests).
    return_meta : bool
        Append a ``meta`` dict to each item: the recorded 2x3 ``affine`` (original ->
        crop), the drawn parameters, ``keypoints`` (N, K, 3) in crop pixels (network
        layout, flipped channels swapped), ``image_id``, ``file_name`` and ``reduce``
        (the JPEG decode reduction used). Items with meta do not batch.

    Attributes
    ----------
    index : ndarray, int64, (M, 2)
        (image id, main person position) of each sample; the main person is -1 for
        an image sample without anyone to centre on.
    skipped : int
        Unreadable samples skipped by this process.
    """

    def __init__(self, db_path: str, split: str, skeleton=None, config=None, train: bool = True,
                 sample_per: Optional[str] = None, seed: Optional[int] = None,
                 max_items: Optional[int] = None, return_meta: bool = False):
        cfg = config if config is not None else default_config()
        self.cfg = cfg
        self.db = PoseDB(db_path)
        self.split = split
        self.train = bool(train)
        spec = skeleton if skeleton is not None else cfg.data.skeleton
        self.skeleton = self.db.skeleton if is_auto(spec) else get_skeleton(spec)
        self.src_skeleton = self.db.skeleton
        self.return_meta = return_meta
        if self.src_skeleton != self.skeleton:
            try:  # fail now, not in a worker
                convert(np.zeros((0, self.src_skeleton.num_keypoints, 3)), self.src_skeleton,
                        self.skeleton)
            except SkeletonError as e:
                raise SkeletonError(
                    f"{db_path} stores skeleton {self.src_skeleton.name!r} but the network "
                    f"predicts {self.skeleton.name!r}: {e}") from None
        self.sample_per = sample_per or cfg.data.sample_per
        if self.sample_per not in ("person", "image"):
            raise ValueError(f"sample_per must be 'person' or 'image', got {self.sample_per!r}")
        if cfg.aug.scale_mode not in ("person", "image"):
            raise ConfigError(f"aug.scale_mode is {cfg.aug.scale_mode!r}; use 'person' "
                              "(CMU) or 'image' (train at the test-time size)")
        self.seed = int(cfg.train.seed if seed is None else seed)
        self.augmenter = Augmenter(self.skeleton, cfg.aug)
        self._local = _Local()
        self._owner = (os.getpid(), threading.get_ident())
        self.skipped = 0
        self.index = self._build_index()
        if max_items is not None:
            self.index = self.index[:int(max_items)]
        if len(self.index) == 0:
            raise PoseDBError(f"{db_path}: split {split!r} has no usable samples "
                              f"(splits: {self.db.splits()})")
        # Loaders fork/spawn their workers right after construction: nothing stays open.
        self.db.close()

    # -- sample index ---------------------------------------------------------------------
    def _build_index(self) -> np.ndarray:
        """(M, 2) int64 rows of (image id, main person position within the image)."""
        a = self.cfg.aug
        tab = self.db.people_table(self.split)
        image_ids = self.db.image_ids(self.split)
        rows = []
        if tab["image_id"].size:
            bounds = np.flatnonzero(np.diff(tab["image_id"])) + 1
            starts = np.concatenate([[0], bounds])
            ends = np.concatenate([bounds, [tab["image_id"].size]])
        else:
            starts = ends = np.zeros(0, np.int64)
        K = self.src_skeleton.num_keypoints
        for s, e in zip(starts, ends):
            img = int(tab["image_id"][s])
            people = {k: v[s:e] for k, v in tab.items() if k != "image_id"}
            # The index needs keypoint counts (CMU filter) and bbox/scale/centre; only a
            # person with neither a box nor an MPII scale+centre needs its keypoints'
            # extent, which means reading the image's people.
            bb, sc, ce = people["bbox"], people["scale"], people["center"]
            known = ((np.all(np.isfinite(bb), 1) & (bb[:, 3] > 0))
                     | (np.isfinite(sc) & np.all(np.isfinite(ce), 1)))
            if known.all():
                kp = np.zeros((e - s, K, 3), np.float32)
                for i, n in enumerate(people["num_keypoints"]):
                    kp[i, :n, 2] = 1
            else:
                kp = self.db.people(img)["keypoints"]
            people["keypoints"] = kp
            _, centers = person_scales_centers(people, a.scale_ref)
            if self.sample_per == "person":
                for m in select_main_people(people, centers, int(a.min_keypoints),
                                            float(a.min_area), float(a.min_center_dist)):
                    rows.append((img, int(m)))
            else:
                n_kp = people["num_keypoints"].astype(np.float64)
                size = np.where(np.isfinite(people["area"]), people["area"], 0) + n_kp
                size[people["is_crowd"] | (n_kp == 0)] = -1
                rows.append((img, int(np.argmax(size)) if size.max() >= 0 else -1))
        if self.sample_per == "image":
            with_people = {r[0] for r in rows}
            rows += [(int(i), -1) for i in image_ids if int(i) not in with_people]
            rows.sort()
        return np.array(rows, dtype=np.int64).reshape(-1, 2)

    def __len__(self):
        return int(self.index.shape[0])

    # -- per-process, per-thread state --------------------------------------------------------
    def __getstate__(self):
        st = self.__dict__.copy()
        st.pop("_local", None)
        return st

    def __setstate__(self, st):
        self.__dict__.update(st)
        self._local = _Local()

    def _state(self) -> _Local:
        loc = self._local
        if loc.pid != os.getpid():   # forked: the parent's generator and buffers stay behind
            loc.pid, loc.rng, loc.renderer, loc.crop = os.getpid(), None, None, None
        return loc

    @property
    def renderer(self):
        """This thread's :class:`~mxpose.targets.TargetRenderer` (it owns its buffers)."""
        loc = self._state()
        if loc.renderer is None:
            from ..targets import TargetRenderer
            loc.renderer = TargetRenderer.from_config(
                self.skeleton, int(self.cfg.aug.input_size), self.cfg.targets)
        return loc.renderer

    def rng(self) -> np.random.Generator:
        """This thread's generator (see the module docstring for its seed)."""
        loc = self._state()
        if loc.rng is None:
            if (os.getpid(), threading.get_ident()) == self._owner:
                key = [self.seed]
            else:
                key = [self.seed, os.getpid(), threading.get_ident()]
            loc.rng = np.random.default_rng(np.random.SeedSequence(key))
        return loc.rng

    def reseed(self, seed: int):
        """Make the next samples of this process and thread reproducible from ``seed``."""
        self._state().rng = np.random.default_rng(seed)

    # -- samples ---------------------------------------------------------------------------
    def __getitem__(self, idx):
        return self.get(idx)[0]

    def get(self, idx: int, seed: Optional[int] = None):
        """Sample ``idx`` and the number of unreadable samples skipped to serve it.

        Parameters
        ----------
        idx : int
        seed : int, optional
            Draw the augmentation from ``np.random.default_rng(seed)`` (thread-safe,
            independent of which worker serves it); default: this thread's generator.

        Returns
        -------
        item : tuple
            ``(image, heatmaps, heat_mask, pafs, paf_mask)`` (+ ``meta`` with
            ``return_meta``), from sample ``idx`` or, when that one is unreadable, the
            next readable one.
        skipped : int
        """
        n = len(self)
        rng = self.rng() if seed is None else np.random.default_rng(seed)
        for attempt in range(min(n, 16)):
            j = (int(idx) + attempt) % n
            try:
                return self._load(j, rng), attempt
            except _RECORD_ERRORS as e:
                self.skipped += 1
                log.warning("%s: skipping sample %d (%s): %s [%d skipped in process %d]",
                            self.db.path, j, self._describe(j), e, self.skipped, os.getpid())
        raise PoseDBError(f"{self.db.path}: {min(n, 16)} consecutive samples from {idx} "
                          "are unreadable")

    def _describe(self, j: int) -> str:
        img_id = int(self.index[j, 0])
        try:
            return f"image id {img_id}, {self.db.image_info(img_id)['file_name']!r}"
        except Exception:   # the record may be broken beyond its name
            return f"image id {img_id}"

    def load_raw(self, j: int):
        """Sample j before augmentation: (image id, people dict in the network layout,
        main person position)."""
        img_id, main = (int(v) for v in self.index[j])
        people = self.db.people(img_id)
        kp = people["keypoints"]
        if self.src_skeleton != self.skeleton:
            kp = convert(kp, self.src_skeleton, self.skeleton)
        return img_id, people, kp, main

    # -- the stages of one sample (separate so tools/bench/bench_pipeline.py can time them) ------
    def _prepare(self, j: int, rng: np.random.Generator) -> dict:
        """DB reads (no pixels) and the drawn affine of sample j."""
        a = self.cfg.aug
        img_id, people, kp, main = self.load_raw(j)
        info = self.db.image_info(img_id)
        scales, centers = person_scales_centers(people, a.scale_ref)
        if main >= 0 and np.isfinite(scales[main]):
            center, pscale = centers[main], float(scales[main])
        else:  # no person to centre on: fit the whole image into the crop
            center = ((info["width"] - 1) / 2, (info["height"] - 1) / 2)
            pscale = a.target_dist * max(info["width"], info["height"]) / a.input_size
        if a.scale_mode == "image":  # the Predictor's resize: s = boxsize / image height
            pscale = a.target_dist * info["height"] / float(self.cfg.test.boxsize)
        M, flipped, params = sample_affine(rng, center, pscale, a, self.train)
        # crowd people carry no usable keypoints; everyone else is rendered
        if people["is_crowd"].any():
            kp = kp[~people["is_crowd"]]
        return {"image_id": img_id, "info": info, "keypoints": kp, "M": M,
                "flipped": flipped, "params": params}

    def _decode(self, s: dict):
        """Image pixels at the reduced size the drawn scale allows, and the affine from
        decoded pixels to original pixels (None at full size)."""
        info = s["info"]
        data = self.db.image_bytes(s["image_id"])
        img, r, channels = decode_image(data, _reduce_factor(s["params"]["scale"]),
                                        channels="any",
                                        expect_size=(info["width"], info["height"]))
        # decoded pixel q is original pixel r*q + (r-1)/2 (DCT scaling averages r x r)
        pre = None if r == 1 else np.array([[r, 0, (r - 1) / 2], [0, r, (r - 1) / 2]],
                                           dtype=np.float64)
        return img, pre, channels, r

    def _ignore(self, s: dict):
        """The supervision mask (1 = supervise) over the bounding box of the image's
        ignore regions, and that box's offset; (None, None) when there is nothing to
        ignore inside this sample's crop (then no mask is decoded or warped)."""
        if not self.cfg.targets.use_masks:
            return None, None
        rles = self.db.ignore_rles(s["image_id"])
        if not rles:
            return None, None
        from pycocotools import mask as mask_utils
        info = s["info"]
        for r in rles:
            if tuple(r["size"]) != (info["height"], info["width"]):
                raise PoseDBError(f"ignore region of size {r['size']} on a "
                                  f"{info['width']}x{info['height']} image")
        rles = [{"size": r["size"], "counts": r["counts"]} for r in rles]
        box = mask_utils.toBbox(rles)                      # (x, y, w, h) pixel edges
        x0, y0 = int(box[:, 0].min()), int(box[:, 1].min())
        x1 = int(math.ceil((box[:, 0] + box[:, 2]).max()))
        y1 = int(math.ceil((box[:, 1] + box[:, 3]).max()))
        if x1 <= x0 or y1 <= y0:
            return None, None
        if crop_region(s["M"], (x0, y0, x1 - 1, y1 - 1), self.augmenter.size) is None:
            return None, None
        ignore = mask_utils.decode(mask_utils.merge(rles, intersect=False) if len(rles) > 1
                                   else rles[0])
        # pycocotools decodes Fortran-ordered masks; OpenCV wants C order
        sub = 1.0 - np.ascontiguousarray(ignore[y0:y1, x0:x1], dtype=np.float32)
        return sub, (x0, y0)

    def _crop_buffer(self) -> np.ndarray:
        loc = self._state()
        if loc.crop is None:
            S = self.augmenter.size
            loc.crop = np.empty((S, S, 3), dtype=np.uint8)
        return loc.crop

    def _load(self, j: int, rng: Optional[np.random.Generator] = None):
        s = self._prepare(j, self.rng() if rng is None else rng)
        img, pre, channels, _ = self._decode(s)
        sup, offset = self._ignore(s)
        out = self.augmenter.apply(s["M"], s["flipped"], s["params"], img, s["keypoints"],
                                   sup, pre, offset or (0, 0), self._crop_buffer())
        # new arrays: gluon's DataLoader holds a whole batch of items before stacking them
        t = self.renderer.render(out["keypoints"], out["supervise"], copy=True,
                                 expand_masks=False)
        image = normalize_image(out["image"], channels=channels)
        item = (image, t["heatmaps"], t["heat_mask"], t["pafs"], t["paf_mask"])
        if self.return_meta:
            info = s["info"]
            meta = dict(out["meta"], image_id=s["image_id"], file_name=info["file_name"],
                        keypoints=out["keypoints"], reduce=1 if pre is None else int(pre[0, 0]))
            return item + (meta,)
        return item
