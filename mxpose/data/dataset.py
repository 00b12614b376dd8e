"""``PoseDataset``: stored image + people -> augmented training sample with targets.

Each item is ``(image, heatmaps, heat_mask, pafs, paf_mask)``, float32:

=========== ================= =====================================================
image       (3, S, S)          BGR, ``(v - 128) / 256``
heatmaps    (K+1, S/s, S/s)    Gaussian per keypoint, background last
heat_mask   (K+1, S/s, S/s)    1 = supervise
pafs        (2L, S/s, S/s)     limb l: x at 2l, y at 2l+1
paf_mask    (2L, S/s, S/s)
=========== ================= =====================================================

with S the crop size (``aug.input_size``), s the stride, K and L from the network's
skeleton (``data.skeleton``); the DB's own layout is converted to it
(:func:`mxpose.skeleton.convert`).

Multi-process loading: the DB connection is opened lazily in each process and thread
and dropped when the dataset is pickled; the random generator is per process (seeded
from ``train.seed`` and the process id), so workers never repeat each other's
augmentation. A record that cannot be decoded is skipped with a logged warning naming
it, and the next record is served in its place (never a dead worker, never a silent
zero sample).
"""
from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np

from ..config import default_config
from ..skeleton import SkeletonError, convert, get_skeleton
from .store import PoseDB, PoseDBError
from .transforms import (Augmenter, normalize_image, person_scales_centers,
                         select_main_people, sample_affine)

__all__ = ["PoseDataset"]

log = logging.getLogger(__name__)

try:  # gluon's Dataset is a plain base class; keep the module importable without mxnet
    from mxnet.gluon.data import Dataset as _Base
except ImportError:  # pragma: no cover - mxnet is a hard requirement of the trainer only
    _Base = object


def _reduce_factor(scale: float) -> int:
    """Largest JPEG DCT reduction (1, 2, 4) that still leaves >= 1 source px per crop px."""
    for r in (4, 2):
        if scale * r <= 1.0:
            return r
    return 1


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
    """

    def __init__(self, db_path: str, split: str, skeleton=None, config=None, train: bool = True,
                 sample_per: Optional[str] = None, seed: Optional[int] = None,
                 max_items: Optional[int] = None, return_meta: bool = False):
        cfg = config if config is not None else default_config()
        self.cfg = cfg
        self.db = PoseDB(db_path)
        self.split = split
        self.train = bool(train)
        self.skeleton = get_skeleton(skeleton if skeleton is not None else cfg.data.skeleton)
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
        self.seed = int(cfg.train.seed if seed is None else seed)
        self.augmenter = Augmenter(self.skeleton, cfg.aug)
        self._renderer = None
        self._rng = None
        self._rng_pid = None
        self.skipped = 0
        self.index = self._build_index()
        if max_items is not None:
            self.index = self.index[:int(max_items)]
        if len(self.index) == 0:
            raise PoseDBError(f"{db_path}: split {split!r} has no usable samples "
                              f"(splits: {self.db.splits()})")

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
            # person_scales_centers wants keypoints only for the extent fallback; the index
            # uses bbox/scale, and keypoint counts for the CMU filter.
            kp = np.zeros((e - s, K, 3), np.float32)
            for i, n in enumerate(people["num_keypoints"]):
                kp[i, :n, 2] = 1
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

    # -- per-process state ------------------------------------------------------------------
    def __getstate__(self):
        st = self.__dict__.copy()
        st["_renderer"] = None
        st["_rng"] = None
        return st

    @property
    def renderer(self):
        if self._renderer is None:
            from ..targets import TargetRenderer
            self._renderer = TargetRenderer.from_config(
                self.skeleton, int(self.cfg.aug.input_size), self.cfg.targets)
        return self._renderer

    def rng(self) -> np.random.Generator:
        pid = os.getpid()
        if self._rng is None or self._rng_pid != pid:
            self._rng = np.random.default_rng(np.random.SeedSequence([self.seed, pid]))
            self._rng_pid = pid
        return self._rng

    def reseed(self, seed: int):
        """Make the next samples of this process reproducible from ``seed``."""
        self._rng = np.random.default_rng(seed)
        self._rng_pid = os.getpid()

    # -- samples ---------------------------------------------------------------------------
    def __getitem__(self, idx):
        n = len(self)
        for attempt in range(min(n, 16)):
            j = (int(idx) + attempt) % n
            try:
                return self._load(j)
            except (PoseDBError, ValueError) as e:
                self.skipped += 1
                img_id = int(self.index[j, 0])
                log.warning("skipping sample %d (image id %d of %s): %s", j, img_id,
                            self.db.path, e)
        raise PoseDBError(f"{self.db.path}: 16 consecutive samples from {idx} are unreadable")

    def load_raw(self, j: int):
        """Sample j before augmentation: (image id, people dict in the network layout,
        main person position)."""
        img_id, main = (int(v) for v in self.index[j])
        people = self.db.people(img_id)
        kp = people["keypoints"]
        if self.src_skeleton != self.skeleton:
            kp = convert(kp, self.src_skeleton, self.skeleton)
        return img_id, people, kp, main

    def _load(self, j: int):
        a = self.cfg.aug
        img_id, people, kp, main = self.load_raw(j)
        info = self.db.image_info(img_id)
        scales, centers = person_scales_centers(people, a.scale_ref)
        if main >= 0 and np.isfinite(scales[main]):
            center, pscale = centers[main], float(scales[main])
        else:  # no person to centre on: fit the whole image into the crop
            center = ((info["width"] - 1) / 2, (info["height"] - 1) / 2)
            pscale = a.target_dist * max(info["width"], info["height"]) / a.input_size
        rng = self.rng()
        M, flipped, params = sample_affine(rng, center, pscale, a, self.train)
        r = _reduce_factor(params["scale"])
        img = self.db.load_image(img_id, reduce=r)
        pre = None
        if r > 1:
            # reduced pixel q covers original pixels r*q .. r*q + r - 1: centre r*q + (r-1)/2
            sx = info["width"] / img.shape[1]
            sy = info["height"] / img.shape[0]
            pre = np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2]])
        sup = None
        if self.cfg.targets.use_masks and self.db.ignore_rles(img_id):
            sup = 1.0 - self.db.ignore_mask(img_id).astype(np.float32)
        # crowd people carry no usable keypoints; everyone else is rendered
        kp = kp[~people["is_crowd"]] if people["is_crowd"].any() else kp
        out = self.augmenter.apply(M, flipped, params, img, kp, sup, pre)
        # copies: gluon's DataLoader holds a whole batch of items before stacking them
        t = self.renderer.render(out["keypoints"], out["supervise"], copy=True)
        heat, heat_mask, paf, paf_mask = t["heatmaps"], t["heat_mask"], t["pafs"], t["paf_mask"]
        image = normalize_image(out["image"])
        if self.return_meta:
            meta = dict(out["meta"], image_id=img_id, file_name=info["file_name"],
                        keypoints=out["keypoints"])
            return image, heat, heat_mask, paf, paf_mask, meta
        return image, heat, heat_mask, paf, paf_mask
