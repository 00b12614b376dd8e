"""Keypoint layouts defined by name.

A :class:`Skeleton` names its keypoints, its limbs (pairs of keypoint names)
and its left/right flip pairs.  Every index array the rest of the library
uses (limb endpoints, flip permutations, PAF channel permutations, OKS sigmas)
is derived once here, from the names, so nothing positional can drift away
from the layout it belongs to.

Shipped layouts
---------------
``coco``             the 17 COCO keypoints in COCO order, with OKS sigmas.
``openpose_coco18``  OpenPose's 18-point body (COCO + neck), 19 CMU limbs.
``mpii``             the 16 MPII joints in MPII id order, 15 limbs.
``openpose_mpi15``   OpenPose's 15-part MPI body (MPII + chest), 14 limbs.
``coco_foot``        COCO-17 then COCO-WholeBody's 6 foot points (WholeBody / CMU foot files).
``body25``           OpenPose's BODY_25 in CMU's part order; limbs in PAF channel order
                     (CMU's ``map_index``), both redundant shoulder-ear limbs kept.
``body25b``          OpenPose's BODY_25B (COCO order + neck, head top, feet), 36 limbs.
``crowdpose``        CrowdPose's 14 points (head = head top), its evaluation sigmas.

OKS sigmas: COCO's for COCO points; a neck borrows the shoulders', a mid-hip or pelvis the
hips', a head top MPII's (.079); the foot points take COCO-WholeBody's foot sigmas
(.068 .066 .066 for the left big toe, small toe, heel; .092 .094 .094 for the right).

A new layout can be defined from a plain dict (e.g. an experiment YAML) with
:meth:`Skeleton.from_dict` and made available by name with
:func:`register_skeleton`; :func:`layout_from_category` reads one from a COCO-format
category (names, 1-based skeleton), inferring flip pairs from left/right names.
"""
from __future__ import annotations

import json
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "Skeleton", "SkeletonError", "get_skeleton", "register_skeleton",
    "list_skeletons", "convert", "list_conversions", "register_conversion",
    "canonical_name", "infer_flip_pairs", "match_known_layout", "layout_from_category",
    "components", "propose_limbs", "check_connected", "DEFAULT_SIGMA",
]


class SkeletonError(ValueError):
    """An invalid skeleton definition or an unknown skeleton/conversion."""


class Skeleton:
    """A keypoint layout: names, limbs and flip pairs, with derived indices.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"openpose_coco18"``.
    keypoints : sequence of str
        Keypoint names in channel order (K of them).
    limbs : sequence of (str, str)
        Limbs as (from, to) keypoint names, in PAF channel order (L of them).
    flip_pairs : sequence of (str, str)
        Left/right keypoint pairs swapped by a horizontal flip.
    sigmas : mapping str -> float, optional
        Per-keypoint OKS sigmas keyed by name (all keypoints or none).
    no_start_limbs : sequence of (str, str), optional
        Limbs that may connect two people's parts but must never start a new
        person during assembly (CMU's ear-shoulder limbs).

    Attributes
    ----------
    num_keypoints : int
        K.
    num_limbs : int
        L.
    limb_index : ndarray, int32, (L, 2)
        Keypoint indices of each limb's endpoints.
    flip_index : ndarray, int32, (K,)
        ``flipped[k] = original[flip_index[k]]`` after a horizontal flip.
    limb_flip_index : ndarray, int32, (L,)
        PAF limb permutation under a horizontal flip; see
        :meth:`flip_paf_channels`.
    limb_flip_sign : ndarray, float32, (L,)
        -1 where the flipped limb runs from the image of the original limb's
        ``to`` end (so its PAF direction reverses), else +1.
    """

    def __init__(self, name: str, keypoints: Sequence[str],
                 limbs: Sequence[Sequence[str]], flip_pairs: Sequence[Sequence[str]] = (),
                 sigmas: Optional[Mapping[str, float]] = None,
                 no_start_limbs: Sequence[Sequence[str]] = ()):
        self.name = str(name)
        self.keypoints: Tuple[str, ...] = tuple(str(k) for k in keypoints)
        self.limbs: Tuple[Tuple[str, str], ...] = tuple(self._pair(p, "limb") for p in limbs)
        self.flip_pairs: Tuple[Tuple[str, str], ...] = tuple(
            self._pair(p, "flip pair") for p in flip_pairs)
        self.no_start_limbs: Tuple[Tuple[str, str], ...] = tuple(
            self._pair(p, "no-start limb") for p in no_start_limbs)
        self.sigmas: Optional[Dict[str, float]] = (
            None if sigmas is None else {str(k): float(v) for k, v in dict(sigmas).items()})
        self._validate()
        self._derive()

    # -- construction -----------------------------------------------------------------
    def _pair(self, p, what):
        if isinstance(p, str) or len(p) != 2:
            raise SkeletonError(f"skeleton {self.name!r}: {what} {p!r} must be a pair of names")
        return (str(p[0]), str(p[1]))

    def _validate(self):
        where = f"skeleton {self.name!r}"
        if not self.keypoints:
            raise SkeletonError(f"{where}: no keypoints")
        if len(set(self.keypoints)) != len(self.keypoints):
            dup = sorted({k for k in self.keypoints if self.keypoints.count(k) > 1})
            raise SkeletonError(f"{where}: duplicate keypoint names {dup}")
        known = set(self.keypoints)

        def check(pairs, what):
            for a, b in pairs:
                for n in (a, b):
                    if n not in known:
                        raise SkeletonError(f"{where}: {what} ({a}, {b}) names unknown keypoint {n!r}")
                if a == b and what != "flip pair":
                    raise SkeletonError(f"{where}: {what} ({a}, {b}) joins a keypoint to itself")

        check(self.limbs, "limb")
        check(self.flip_pairs, "flip pair")
        check(self.no_start_limbs, "no-start limb")
        if len(set(self.limbs)) != len(self.limbs):
            raise SkeletonError(f"{where}: duplicate limbs")
        for l in self.no_start_limbs:
            if l not in self.limbs:
                raise SkeletonError(f"{where}: no-start limb {l} is not one of the limbs")
        seen = {}
        for a, b in self.flip_pairs:
            for n, m in ((a, b), (b, a)):
                if n in seen and seen[n] != m:
                    # A keypoint mapped to two partners makes the flip no involution.
                    raise SkeletonError(
                        f"{where}: flip is not an involution: {n!r} pairs with both "
                        f"{seen[n]!r} and {m!r}")
                seen[n] = m
        if self.sigmas is not None:
            missing = known - set(self.sigmas)
            extra = set(self.sigmas) - known
            if missing or extra:
                raise SkeletonError(
                    f"{where}: sigmas must be keyed by keypoint name; missing {sorted(missing)}, "
                    f"unknown {sorted(extra)}")

    def _derive(self):
        idx = {k: i for i, k in enumerate(self.keypoints)}
        self._index = idx
        self.num_keypoints = len(self.keypoints)
        self.num_limbs = len(self.limbs)
        self.limb_index = np.array([[idx[a], idx[b]] for a, b in self.limbs],
                                   dtype=np.int32).reshape(-1, 2)
        flip = np.arange(self.num_keypoints, dtype=np.int32)
        for a, b in self.flip_pairs:
            flip[idx[a]], flip[idx[b]] = idx[b], idx[a]
        self.flip_index = flip
        # A flip maps limb (a, b) to (flip a, flip b), which is either a limb as listed or
        # one listed the other way round (then its PAF points the other way).
        lf = np.arange(self.num_limbs, dtype=np.int32)
        sign = np.ones(self.num_limbs, dtype=np.float32)
        limb_pos = {l: i for i, l in enumerate(self.limbs)}
        for i, (a, b) in enumerate(self.limbs):
            fa, fb = self.keypoints[flip[idx[a]]], self.keypoints[flip[idx[b]]]
            if (fa, fb) in limb_pos:
                lf[i] = limb_pos[(fa, fb)]
            elif (fb, fa) in limb_pos:
                lf[i] = limb_pos[(fb, fa)]
                sign[i] = -1.0
            else:
                raise SkeletonError(
                    f"skeleton {self.name!r}: limb ({a}, {b}) flips to ({fa}, {fb}), "
                    "which is not a limb: flip pairs and limbs disagree")
        self.limb_flip_index = lf
        self.limb_flip_sign = sign
        self.no_start_limb_index = np.array(
            [limb_pos[l] for l in self.no_start_limbs], dtype=np.int32)
        self.sigma_array = (None if self.sigmas is None else
                            np.array([self.sigmas[k] for k in self.keypoints], dtype=np.float32))

    # -- lookups ----------------------------------------------------------------------
    def index(self, name: str) -> int:
        """Channel index of keypoint ``name``."""
        try:
            return self._index[name]
        except KeyError:
            raise SkeletonError(
                f"skeleton {self.name!r} has no keypoint {name!r}; it has {list(self.keypoints)}"
            ) from None

    @property
    def num_heatmaps(self) -> int:
        """K + 1 heatmap channels (background last)."""
        return self.num_keypoints + 1

    @property
    def num_pafs(self) -> int:
        """2L PAF channels (x at 2l, y at 2l+1)."""
        return 2 * self.num_limbs

    def heatmap_flip_index(self) -> np.ndarray:
        """(K+1,) channel permutation of a flipped heatmap stack (background stays)."""
        return np.concatenate([self.flip_index, [self.num_keypoints]]).astype(np.int32)

    def paf_flip_index(self) -> Tuple[np.ndarray, np.ndarray]:
        """Channel permutation and per-channel sign for a horizontally flipped PAF stack.

        Returns
        -------
        index : ndarray, int32, (2L,)
        sign : ndarray, float32, (2L,)
            ``flipped_pafs[c] = sign[c] * mirror(pafs[index[c]])``: the x component of
            a mirrored field changes sign, and a limb that maps onto a limb listed the
            other way round changes sign in both components.
        """
        index = np.empty(2 * self.num_limbs, dtype=np.int32)
        sign = np.empty(2 * self.num_limbs, dtype=np.float32)
        for i in range(self.num_limbs):
            j = self.limb_flip_index[i]
            s = self.limb_flip_sign[i]
            index[2 * j], index[2 * j + 1] = 2 * i, 2 * i + 1
            sign[2 * j], sign[2 * j + 1] = -s, s
        return index, sign

    def flip_keypoints(self, kpts: np.ndarray, width: float) -> np.ndarray:
        """Mirror keypoints ``(..., K, 3)`` horizontally in an image of ``width`` pixels.

        Uses the pixel-centre convention ``x' = width - 1 - x`` (0-based pixel centres), and
        swaps left/right channels. Unlabelled entries (v == 0) keep their zeros.
        """
        out = np.array(kpts, dtype=np.float32, copy=True)[..., self.flip_index, :]
        lab = out[..., 2] > 0
        out[..., 0] = np.where(lab, (width - 1.0) - out[..., 0], out[..., 0])
        return out

    def to_dict(self) -> dict:
        """Plain JSON-serialisable definition (round-trips through :meth:`from_dict`)."""
        d = {"name": self.name, "keypoints": list(self.keypoints),
             "limbs": [list(l) for l in self.limbs],
             "flip_pairs": [list(p) for p in self.flip_pairs]}
        if self.no_start_limbs:
            d["no_start_limbs"] = [list(l) for l in self.no_start_limbs]
        if self.sigmas is not None:
            d["sigmas"] = dict(self.sigmas)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Skeleton":
        """Build a skeleton from a plain mapping (as read from YAML or JSON)."""
        allowed = {"name", "keypoints", "limbs", "flip_pairs", "sigmas", "no_start_limbs"}
        unknown = set(d) - allowed
        if unknown:
            raise SkeletonError(f"skeleton definition has unknown keys {sorted(unknown)}; "
                                f"allowed: {sorted(allowed)}")
        for req in ("name", "keypoints", "limbs"):
            if req not in d:
                raise SkeletonError(f"skeleton definition lacks {req!r}")
        return cls(d["name"], d["keypoints"], d["limbs"], d.get("flip_pairs", ()),
                   d.get("sigmas"), d.get("no_start_limbs", ()))

    def __eq__(self, other):
        return isinstance(other, Skeleton) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(self.to_json())

    def __repr__(self):
        return (f"Skeleton({self.name!r}, K={self.num_keypoints}, L={self.num_limbs}, "
                f"flip_pairs={len(self.flip_pairs)})")


# ---------------------------------------------------------------------------------------
# Shipped layouts
# ---------------------------------------------------------------------------------------
_COCO_KEYPOINTS = ("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder",
                   "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee",
                   "r_knee", "l_ankle", "r_ankle")
# COCO keypoint evaluation sigmas (pycocotools' COCOeval defaults), by name.
_COCO_SIGMAS = {"nose": .026, "l_eye": .025, "r_eye": .025, "l_ear": .035, "r_ear": .035,
                "l_shoulder": .079, "r_shoulder": .079, "l_elbow": .072, "r_elbow": .072,
                "l_wrist": .062, "r_wrist": .062, "l_hip": .107, "r_hip": .107,
                "l_knee": .087, "r_knee": .087, "l_ankle": .089, "r_ankle": .089}
_LR = ("eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle")

# The COCO annotation file's own skeleton (1-based in the JSON), by name.
_COCO_LIMBS = (("l_ankle", "l_knee"), ("l_knee", "l_hip"), ("r_ankle", "r_knee"),
               ("r_knee", "r_hip"), ("l_hip", "r_hip"), ("l_shoulder", "l_hip"),
               ("r_shoulder", "r_hip"), ("l_shoulder", "r_shoulder"),
               ("l_shoulder", "l_elbow"), ("r_shoulder", "r_elbow"), ("l_elbow", "l_wrist"),
               ("r_elbow", "r_wrist"), ("l_eye", "r_eye"), ("nose", "l_eye"),
               ("nose", "r_eye"), ("l_eye", "l_ear"), ("r_eye", "r_ear"),
               ("l_ear", "l_shoulder"), ("r_ear", "r_shoulder"))

_OP18_KEYPOINTS = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder",
                   "l_elbow", "l_wrist", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee",
                   "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
# CMU's limb order, which is also the PAF channel order of the released COCO model.
_OP18_LIMBS = (("neck", "r_hip"), ("r_hip", "r_knee"), ("r_knee", "r_ankle"),
               ("neck", "l_hip"), ("l_hip", "l_knee"), ("l_knee", "l_ankle"),
               ("neck", "r_shoulder"), ("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"),
               ("r_shoulder", "r_ear"), ("neck", "l_shoulder"), ("l_shoulder", "l_elbow"),
               ("l_elbow", "l_wrist"), ("l_shoulder", "l_ear"), ("neck", "nose"),
               ("nose", "r_eye"), ("nose", "l_eye"), ("r_eye", "r_ear"), ("l_eye", "l_ear"))
# The neck-of-the-OKS sigma is borrowed from the shoulders: COCO has no neck.
_OP18_SIGMAS = dict(_COCO_SIGMAS, neck=_COCO_SIGMAS["l_shoulder"])

_MPII_KEYPOINTS = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis",
                   "thorax", "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder",
                   "l_shoulder", "l_elbow", "l_wrist")
_MPII_LIMBS = (("r_ankle", "r_knee"), ("r_knee", "r_hip"), ("r_hip", "pelvis"),
               ("pelvis", "l_hip"), ("l_hip", "l_knee"), ("l_knee", "l_ankle"),
               ("pelvis", "thorax"), ("thorax", "upper_neck"), ("upper_neck", "head_top"),
               ("r_wrist", "r_elbow"), ("r_elbow", "r_shoulder"), ("r_shoulder", "thorax"),
               ("thorax", "l_shoulder"), ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"))
# OKS sigmas for MPII joints, as commonly used to report COCO-style AP on MPII
# (mapped by body part from the COCO sigmas; head/neck/torso from the shoulders/hips).
_MPII_SIGMAS = {"r_ankle": .089, "r_knee": .087, "r_hip": .107, "l_hip": .107,
                "l_knee": .087, "l_ankle": .089, "pelvis": .107, "thorax": .079,
                "upper_neck": .079, "head_top": .079, "r_wrist": .062, "r_elbow": .072,
                "r_shoulder": .079, "l_shoulder": .079, "l_elbow": .072, "l_wrist": .062}

_MPI15_KEYPOINTS = ("head_top", "upper_neck", "r_shoulder", "r_elbow", "r_wrist",
                    "l_shoulder", "l_elbow", "l_wrist", "r_hip", "r_knee", "r_ankle",
                    "l_hip", "l_knee", "l_ankle", "chest")
# OpenPose's MPI pairs (POSE_MPI_PAIRS), also the PAF channel order of its MPI model.
_MPI15_LIMBS = (("head_top", "upper_neck"), ("upper_neck", "r_shoulder"),
                ("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"),
                ("upper_neck", "l_shoulder"), ("l_shoulder", "l_elbow"),
                ("l_elbow", "l_wrist"), ("upper_neck", "chest"), ("chest", "r_hip"),
                ("r_hip", "r_knee"), ("r_knee", "r_ankle"), ("chest", "l_hip"),
                ("l_hip", "l_knee"), ("l_knee", "l_ankle"))
_MPI15_SIGMAS = dict({k: _MPII_SIGMAS[k] for k in _MPI15_KEYPOINTS if k != "chest"},
                     chest=.107)


def _lr_pairs(names: Iterable[str]):
    names = set(names)
    return tuple((f"l_{p}", f"r_{p}") for p in _LR if f"l_{p}" in names and f"r_{p}" in names)


_REGISTRY: Dict[str, Skeleton] = {}


def register_skeleton(skel: "Skeleton | Mapping", overwrite: bool = False) -> Skeleton:
    """Make a skeleton available by name; accepts a :class:`Skeleton` or a plain dict."""
    if not isinstance(skel, Skeleton):
        skel = Skeleton.from_dict(skel)
    if skel.name in _REGISTRY and not overwrite and _REGISTRY[skel.name] != skel:
        raise SkeletonError(f"a different skeleton named {skel.name!r} is already registered")
    _REGISTRY[skel.name] = skel
    return skel


def get_skeleton(name_or_def) -> Skeleton:
    """Return a skeleton by registry name, or build one from a definition dict."""
    if isinstance(name_or_def, Skeleton):
        return name_or_def
    if isinstance(name_or_def, Mapping):
        return Skeleton.from_dict(name_or_def)
    if name_or_def == "auto":
        raise SkeletonError("skeleton 'auto' stands for the layout stored in the DB "
                            "(data.db); resolve it from the DB first "
                            "(mxpose.data.dataset.resolve_skeleton) or name a layout")
    try:
        return _REGISTRY[name_or_def]
    except KeyError:
        raise SkeletonError(
            f"unknown skeleton {name_or_def!r}; known: {sorted(_REGISTRY)} "
            "(define new ones in the experiment YAML under data.skeleton)") from None


def list_skeletons():
    return sorted(_REGISTRY)


register_skeleton(Skeleton("coco", _COCO_KEYPOINTS, _COCO_LIMBS, _lr_pairs(_COCO_KEYPOINTS),
                           _COCO_SIGMAS))
register_skeleton(Skeleton("openpose_coco18", _OP18_KEYPOINTS, _OP18_LIMBS,
                           _lr_pairs(_OP18_KEYPOINTS), _OP18_SIGMAS,
                           no_start_limbs=(("r_shoulder", "r_ear"), ("l_shoulder", "l_ear"))))
register_skeleton(Skeleton("mpii", _MPII_KEYPOINTS, _MPII_LIMBS, _lr_pairs(_MPII_KEYPOINTS),
                           _MPII_SIGMAS))
register_skeleton(Skeleton("openpose_mpi15", _MPI15_KEYPOINTS, _MPI15_LIMBS,
                           _lr_pairs(_MPI15_KEYPOINTS), _MPI15_SIGMAS))


# ---------------------------------------------------------------------------------------
# Conversions between layouts, on (N, K, 3) arrays of x, y, v
# ---------------------------------------------------------------------------------------
_CONVERSIONS: Dict[Tuple[str, str], Callable[[np.ndarray], np.ndarray]] = {}


def register_conversion(src: str, dst: str, fn: Callable[[np.ndarray], np.ndarray]):
    """Register ``fn((N, K_src, 3)) -> (N, K_dst, 3)`` as the conversion src -> dst."""
    _CONVERSIONS[(src, dst)] = fn


def list_conversions():
    return sorted(_CONVERSIONS)


def _as_people(kpts, skel: Skeleton) -> np.ndarray:
    a = np.asarray(kpts, dtype=np.float32)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (skel.num_keypoints, 3):
        raise SkeletonError(f"expected keypoints of shape (N, {skel.num_keypoints}, 3) for "
                            f"skeleton {skel.name!r}, got {np.shape(kpts)}")
    return a


def _midpoint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mid-point of two (N, 3) keypoints: labelled only when both are, visible (2) only
    when both are visible, otherwise labelled occluded (1)."""
    out = np.zeros_like(a)
    both = (a[:, 2] > 0) & (b[:, 2] > 0)
    out[both, :2] = 0.5 * (a[both, :2] + b[both, :2])
    vis = both & (a[:, 2] >= 2) & (b[:, 2] >= 2)
    out[both, 2] = np.where(vis[both], 2.0, 1.0)
    return out


def _by_name(src: Skeleton, dst: Skeleton, derived: Mapping[str, Callable] = {}):
    def fn(kpts):
        a = _as_people(kpts, src)
        out = np.zeros((a.shape[0], dst.num_keypoints, 3), dtype=np.float32)
        for j, name in enumerate(dst.keypoints):
            if name in derived:
                out[:, j] = derived[name](a)
            elif name in src._index:
                out[:, j] = a[:, src._index[name]]
        return out
    return fn


def _mid(skel: Skeleton, n1: str, n2: str):
    i, j = skel.index(n1), skel.index(n2)
    return lambda a: _midpoint(a[:, i], a[:, j])


def _extrapolate(skel: Skeleton, through: str, away_from: str):
    """2*through - away_from, with the same labelling rule as a mid-point."""
    i, j = skel.index(through), skel.index(away_from)

    def f(a):
        m = _midpoint(a[:, i], a[:, j])
        lab = m[:, 2] > 0
        m[lab, :2] = 2 * a[lab, i, :2] - a[lab, j, :2]
        return m
    return f


def _install_conversions():
    coco, op18 = _REGISTRY["coco"], _REGISTRY["openpose_coco18"]
    mpii, mpi15 = _REGISTRY["mpii"], _REGISTRY["openpose_mpi15"]
    register_conversion("coco", "openpose_coco18",
                        _by_name(coco, op18, {"neck": _mid(coco, "l_shoulder", "r_shoulder")}))
    register_conversion("openpose_coco18", "coco", _by_name(op18, coco))
    register_conversion("mpii", "openpose_mpi15",
                        _by_name(mpii, mpi15, {"chest": _mid(mpii, "pelvis", "thorax")}))

    # MPI-15 has no pelvis/thorax: pelvis is estimated as the mid-hip and the thorax as
    # the point beyond the chest symmetric to it (chest = mid(pelvis, thorax) inverted).
    def to_mpii(kpts):
        a = _as_people(kpts, mpi15)
        out = _by_name(mpi15, mpii)(a)
        pelvis = _mid(mpi15, "l_hip", "r_hip")(a)
        out[:, mpii.index("pelvis")] = pelvis
        c = a[:, mpi15.index("chest")]
        thorax = _midpoint(c, pelvis)
        lab = thorax[:, 2] > 0
        thorax[lab, :2] = 2 * c[lab, :2] - pelvis[lab, :2]
        out[:, mpii.index("thorax")] = thorax
        return out
    register_conversion("openpose_mpi15", "mpii", to_mpii)


_install_conversions()


def _by_common_names(src: Skeleton, dst: Skeleton, missing_ok: bool = False):
    """The conversion between two layouts without a registered one: every ``dst`` keypoint
    is the ``src`` keypoint of the same name (spelling free, :func:`canonical_name`), or a
    ``neck`` / ``mid_hip`` (``pelvis``) derived from the shoulders / hips by the mid-point
    rule. This is what lets a YAML ``data.skeleton`` dict re-define a DB's layout (other
    limbs, a subset of the points, a neck from the shoulders)."""
    canon = {canonical_name(k): k for k in src.keypoints}
    derived_from = {"neck": ("l_shoulder", "r_shoulder"), "mid_hip": ("l_hip", "r_hip"),
                    "pelvis": ("l_hip", "r_hip")}
    derived, missing = {}, []
    for name in dst.keypoints:
        if name in src._index:
            continue
        c = canonical_name(name)
        if c in canon:
            i = src.index(canon[c])
            derived[name] = (lambda a, i=i: a[:, i])
        elif c in derived_from and all(p in canon for p in derived_from[c]):
            derived[name] = _mid(src, *(canon[p] for p in derived_from[c]))
        else:
            missing.append(name)
    if missing and not missing_ok:
        raise SkeletonError(
            f"no conversion from {src.name!r} to {dst.name!r}: {dst.name!r} has keypoints "
            f"{missing} that {src.name!r} lacks (registered conversions: "
            f"{list_conversions()})")
    return _by_name(src, dst, derived)


def convert(kpts: np.ndarray, src, dst, missing: str = "error") -> np.ndarray:
    """Convert people ``(N, K_src, 3)`` (or one person ``(K_src, 3)``) from layout ``src``
    to ``dst``. Same-layout conversion returns a float32 copy.

    ``missing='unlabelled'`` leaves the ``dst`` keypoints that ``src`` cannot give
    unlabelled instead of raising (predictions of a network without feet scored against
    ground truth with feet)."""
    s, d = get_skeleton(src), get_skeleton(dst)
    a = np.asarray(kpts, dtype=np.float32)
    single = a.ndim == 2
    if s == d:
        return _as_people(a, s).copy()[0 if single else slice(None)]
    fn = _CONVERSIONS.get((s.name, d.name)) or _by_common_names(
        s, d, missing_ok=missing == "unlabelled")
    out = fn(_as_people(a, s))
    return out[0] if single else out


# ---------------------------------------------------------------------------------------
# OpenPose BODY_25 / BODY_25B, COCO + feet, CrowdPose
# ---------------------------------------------------------------------------------------
# Foot points in COCO-WholeBody's ``foot_kpts`` order, which is also the order of the 6
# points CMU's foot json appends after COCO's 17.
_FOOT_KEYPOINTS = ("l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe",
                   "r_heel")
# COCO-WholeBody's evaluation sigmas of the foot points (its myeval_wholebody.py, the 6
# values after the 17 body sigmas), by name. They are slightly asymmetric as published.
_FOOT_SIGMAS = {"l_big_toe": .068, "l_small_toe": .066, "l_heel": .066,
                "r_big_toe": .092, "r_small_toe": .094, "r_heel": .094}
_FOOT_LIMBS = (("l_ankle", "l_big_toe"), ("l_big_toe", "l_small_toe"), ("l_ankle", "l_heel"),
               ("r_ankle", "r_big_toe"), ("r_big_toe", "r_small_toe"), ("r_ankle", "r_heel"))
_LR_ALL = _LR + ("big_toe", "small_toe", "heel")

# COCO-17 followed by the 6 foot points: what a COCO-WholeBody file or CMU's 23-point foot
# json holds for the body, stored as is by coco_parse.
_COCO_FOOT_KEYPOINTS = _COCO_KEYPOINTS + _FOOT_KEYPOINTS

# BODY_25 in CMU's part order (OpenPose poseParameters.cpp); background is heatmap channel 25.
_BODY25_KEYPOINTS = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder",
                     "l_elbow", "l_wrist", "mid_hip", "r_hip", "r_knee", "r_ankle", "l_hip",
                     "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear") + _FOOT_KEYPOINTS
# CMU's 26 pairs sorted by their POSE_MAP_INDEX entry: limb l of this tuple owns PAF
# channels 2l, 2l+1 of the released network (the pair list itself is in another order).
# Both shoulder-ear limbs are kept, as in the released model.
_BODY25_LIMBS = (("neck", "mid_hip"), ("r_hip", "r_knee"), ("r_knee", "r_ankle"),
                 ("mid_hip", "r_hip"), ("mid_hip", "l_hip"), ("l_hip", "l_knee"),
                 ("l_knee", "l_ankle"), ("neck", "r_shoulder"), ("r_shoulder", "r_elbow"),
                 ("r_elbow", "r_wrist"), ("r_shoulder", "r_ear"), ("neck", "l_shoulder"),
                 ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"), ("l_shoulder", "l_ear"),
                 ("neck", "nose"), ("nose", "r_eye"), ("nose", "l_eye"), ("r_eye", "r_ear"),
                 ("l_eye", "l_ear"), ("l_ankle", "l_big_toe"), ("l_big_toe", "l_small_toe"),
                 ("l_ankle", "l_heel"), ("r_ankle", "r_big_toe"), ("r_big_toe", "r_small_toe"),
                 ("r_ankle", "r_heel"))
# Neck and mid-hip have no COCO sigma: borrowed from the shoulders and the hips.
_BODY25_SIGMAS = dict(_COCO_SIGMAS, neck=_COCO_SIGMAS["l_shoulder"],
                      mid_hip=_COCO_SIGMAS["l_hip"], **_FOOT_SIGMAS)

# BODY_25B (OpenPose's experimental model): COCO order, then neck, head top and the feet;
# its 36 pairs in POSE_BODY_25B_PAIRS order (its map index is the identity).
_BODY25B_KEYPOINTS = _COCO_KEYPOINTS + ("neck", "head_top") + _FOOT_KEYPOINTS
_BODY25B_LIMBS = (("nose", "l_eye"), ("nose", "r_eye"), ("l_eye", "l_ear"), ("r_eye", "r_ear"),
                  ("nose", "l_shoulder"), ("nose", "r_shoulder"), ("l_shoulder", "l_elbow"),
                  ("r_shoulder", "r_elbow"), ("l_elbow", "l_wrist"), ("r_elbow", "r_wrist"),
                  ("l_shoulder", "l_hip"), ("r_shoulder", "r_hip"), ("l_hip", "l_knee"),
                  ("r_hip", "r_knee"), ("l_knee", "l_ankle"), ("r_knee", "r_ankle"),
                  ("l_ankle", "l_big_toe"), ("l_big_toe", "l_small_toe"),
                  ("l_ankle", "l_heel"), ("r_ankle", "r_big_toe"),
                  ("r_big_toe", "r_small_toe"), ("r_ankle", "r_heel"),
                  ("l_shoulder", "neck"), ("l_shoulder", "head_top"), ("r_shoulder", "neck"),
                  ("r_shoulder", "head_top"), ("l_ear", "r_ear"), ("l_ear", "l_shoulder"),
                  ("r_ear", "r_shoulder"), ("l_shoulder", "l_wrist"),
                  ("r_shoulder", "r_wrist"), ("l_wrist", "r_wrist"), ("l_wrist", "l_hip"),
                  ("r_wrist", "r_hip"), ("l_hip", "r_hip"), ("l_ankle", "r_ankle"))
# Head top: MPII's head-top sigma (the shoulders'), as for openpose_mpi15.
_BODY25B_SIGMAS = dict(_BODY25_SIGMAS, head_top=_MPII_SIGMAS["head_top"])
del _BODY25B_SIGMAS["mid_hip"]

# CrowdPose (Li et al. 2019) in its release order; 'head' there is the top of the head.
# Its evaluation sigmas (crowdposetools): COCO's for the limbs, .079 for head and neck.
_CROWDPOSE_KEYPOINTS = ("l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist",
                        "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
                        "head_top", "neck")
_CROWDPOSE_LIMBS = (("head_top", "neck"), ("neck", "l_shoulder"), ("neck", "r_shoulder"),
                    ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"),
                    ("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"), ("neck", "l_hip"),
                    ("neck", "r_hip"), ("l_hip", "l_knee"), ("l_knee", "l_ankle"),
                    ("r_hip", "r_knee"), ("r_knee", "r_ankle"))
_CROWDPOSE_SIGMAS = dict({k: _COCO_SIGMAS[k] for k in _CROWDPOSE_KEYPOINTS[:12]},
                         head_top=.079, neck=.079)


def _lr_pairs_all(names: Iterable[str]):
    names = set(names)
    return tuple((f"l_{p}", f"r_{p}") for p in _LR_ALL
                 if f"l_{p}" in names and f"r_{p}" in names)


register_skeleton(Skeleton("coco_foot", _COCO_FOOT_KEYPOINTS, _COCO_LIMBS + _FOOT_LIMBS,
                           _lr_pairs_all(_COCO_FOOT_KEYPOINTS),
                           dict(_COCO_SIGMAS, **_FOOT_SIGMAS)))
register_skeleton(Skeleton("body25", _BODY25_KEYPOINTS, _BODY25_LIMBS,
                           _lr_pairs_all(_BODY25_KEYPOINTS), _BODY25_SIGMAS,
                           no_start_limbs=(("r_shoulder", "r_ear"), ("l_shoulder", "l_ear"))))
register_skeleton(Skeleton("body25b", _BODY25B_KEYPOINTS, _BODY25B_LIMBS,
                           _lr_pairs_all(_BODY25B_KEYPOINTS), _BODY25B_SIGMAS))
register_skeleton(Skeleton("crowdpose", _CROWDPOSE_KEYPOINTS, _CROWDPOSE_LIMBS,
                           _lr_pairs_all(_CROWDPOSE_KEYPOINTS), _CROWDPOSE_SIGMAS))


def _install_body25_conversions():
    coco, foot = _REGISTRY["coco"], _REGISTRY["coco_foot"]
    b25, b25b = _REGISTRY["body25"], _REGISTRY["body25b"]
    for src in (coco, foot):
        # Neck and mid-hip by the both-visible mid-point rule of openpose_coco18's neck;
        # from plain COCO the feet stay unlabelled.
        register_conversion(src.name, "body25", _by_name(src, b25, {
            "neck": _mid(src, "l_shoulder", "r_shoulder"),
            "mid_hip": _mid(src, "l_hip", "r_hip")}))
        register_conversion(src.name, "body25b", _by_name(src, b25b, {
            "neck": _mid(src, "l_shoulder", "r_shoulder")}))
    for src in (b25, b25b):
        register_conversion(src.name, "coco", _by_name(src, coco))
        register_conversion(src.name, "coco_foot", _by_name(src, foot))
    register_conversion("coco_foot", "coco", _by_name(foot, coco))
    register_conversion("coco", "coco_foot", _by_name(coco, foot))


_install_body25_conversions()


# ---------------------------------------------------------------------------------------
# Layouts read from a COCO-format category (names + 1-based skeleton)
# ---------------------------------------------------------------------------------------
#: OKS sigma of a keypoint a file names but no known layout has, when no --sigmas file is
#: given: 0.067, the mean of COCO's 17 sigmas (a mid-sized body joint).
DEFAULT_SIGMA = 0.067

# Layouts a COCO-format file is recognised as by its keypoint names (in any order): the
# file's own 'skeleton' list is then ignored (CrowdPose's release file carries COCO's
# 17-point list). Extra spellings of a name in such files: CrowdPose's 'head' is the top.
_KNOWN_FILE_LAYOUTS = ("coco", "coco_foot", "crowdpose", "mpii", "body25", "body25b")
_ALIASES = {"crowdpose": {"head": "head_top"}, "mpii": {"head": "head_top"}}

_SIDE_WORDS = {"left": "l", "right": "r", "l": "l", "r": "r", "lt": "l", "rt": "r"}


def canonical_name(name: str) -> str:
    """A keypoint name in mxpose's spelling: lower case, words joined by ``_``, a side
    prefix as ``l_``/``r_``.

    ``'Left Shoulder'``, ``'left_shoulder'``, ``'L_Shoulder'``, ``'LShoulder'`` (OpenPose's
    CamelCase), ``'left-shoulder'`` and ``'shoulder_left'`` all become ``'l_shoulder'``.
    """
    import re
    s = str(name).strip()
    s = re.sub(r"^([LR])(?=[A-Z][a-z])", r"\1_", s)           # LShoulder -> L_Shoulder
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", s)             # BigToe -> Big_Toe
    words = [w for w in re.split(r"[\s_\-\.]+", s.lower()) if w]
    if not words:
        return ""
    if len(words) > 1 and words[0] in _SIDE_WORDS:
        return "_".join([_SIDE_WORDS[words[0]]] + words[1:])
    if len(words) > 1 and words[-1] in _SIDE_WORDS:
        return "_".join([_SIDE_WORDS[words[-1]]] + words[:-1])
    if words[0].startswith(("left", "right")) and len(words[0]) > 5:
        side = "left" if words[0].startswith("left") else "right"
        return "_".join([side[0], words[0][len(side):]] + words[1:])
    return "_".join(words)


def infer_flip_pairs(names: Sequence[str]) -> Tuple[Tuple[str, str], ...]:
    """Left/right pairs among ``names`` (as given), matched by :func:`canonical_name`.

    A name pairs with the one whose canonical form differs only in the side prefix
    (``left_eye``/``right_eye``, ``l_knee``/``r_knee``, ``Left Paw``/``Right Paw``).
    """
    canon = {canonical_name(n): n for n in names}
    pairs = []
    for c, n in canon.items():
        if c.startswith("l_"):
            other = canon.get("r_" + c[2:])
            if other is not None:
                pairs.append((n, other))
    return tuple(pairs)


def match_known_layout(names: Sequence[str]):
    """The shipped layout whose keypoints are ``names`` (spelling and order free).

    Returns
    -------
    (Skeleton, ndarray int64 (K,)) or None
        The layout and ``perm`` with ``known_keypoints[j] = file_keypoints[perm[j]]``.
    """
    canon = [canonical_name(n) for n in names]
    for lname in _KNOWN_FILE_LAYOUTS:
        sk = _REGISTRY[lname]
        if len(canon) != sk.num_keypoints:
            continue
        alias = _ALIASES.get(lname, {})
        here = [alias.get(c, c) for c in canon]
        if sorted(here) == sorted(sk.keypoints) and len(set(here)) == len(here):
            pos = {c: i for i, c in enumerate(here)}
            return sk, np.array([pos[k] for k in sk.keypoints], dtype=np.int64)
    return None


def components(skel: Skeleton):
    """Connected groups of keypoint names under the limbs, largest first."""
    parent = list(range(skel.num_keypoints))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for a, b in skel.limb_index:
        parent[root(int(a))] = root(int(b))
    groups: Dict[int, list] = {}
    for i in range(skel.num_keypoints):
        groups.setdefault(root(i), []).append(skel.keypoints[i])
    return sorted(groups.values(), key=len, reverse=True)


def propose_limbs(skel: Skeleton, people: Optional[np.ndarray] = None):
    """Limbs joining every group of :func:`components` to the largest one.

    With ``people`` (N, K, 3) the joining limb of a group is the pair of keypoints (one in
    the group, one outside) with the smallest median distance over the people where both
    are labelled; without, the first keypoint of each group.
    """
    groups = components(skel)
    main = list(groups[0])
    out = []
    for g in groups[1:]:
        best, best_d = (main[0], g[0]), np.inf
        if people is not None and len(people):
            P = np.asarray(people, np.float32)
            for a in main:
                for b in g:
                    i, j = skel.index(a), skel.index(b)
                    both = (P[:, i, 2] > 0) & (P[:, j, 2] > 0)
                    if both.any():
                        d = float(np.median(np.hypot(*(P[both, i, :2] - P[both, j, :2]).T)))
                        if d < best_d:
                            best, best_d = (a, b), d
        out.append(best)
        main += g
    return out


def check_connected(skel: Skeleton, people: Optional[np.ndarray] = None):
    """Raise :class:`SkeletonError` when some keypoints are reached by no limb path from the
    others: the PAF decoder could never assemble them into a person. The message names the
    unreachable parts and proposes limbs that connect everything."""
    groups = components(skel)
    if len(groups) == 1:
        return
    lost = [n for g in groups[1:] for n in g]
    prop = [list(p) for p in propose_limbs(skel, people)]
    raise SkeletonError(
        f"skeleton {skel.name!r}: keypoints {lost} are not connected by limbs to "
        f"{groups[0][:3] + (['...'] if len(groups[0]) > 3 else [])}, so they can never be "
        f"assembled into a person; add limbs, e.g. these {len(prop)} join everything: "
        f"{json.dumps(prop)} (data.skeleton in the experiment YAML, with the DB layout's "
        f"keypoints and limbs)")


def layout_from_category(category: Mapping, name: str, sigmas=None, source: str = "<json>"):
    """The layout of a COCO-format keypoint category.

    Parameters
    ----------
    category : mapping
        A ``categories`` entry with ``keypoints`` (names) and optionally ``skeleton``
        (1-based index pairs, as COCO files store them).
    name : str
        Name of a custom layout (a known layout keeps its own name).
    sigmas : sequence of float (file order) or mapping name -> float, optional
        OKS sigmas of a custom layout; default: a known keypoint's own sigma, else
        :data:`DEFAULT_SIGMA` (a warning says which keypoints got it).
    source : str
        File name for messages.

    Returns
    -------
    skeleton : Skeleton
    perm : ndarray int64 (K,)
        ``stored[:, j] = file[:, perm[j]]`` (the identity for a custom layout).
    warnings : list of str

    Raises
    ------
    SkeletonError
        No keypoint names, duplicate names, a skeleton pair that is not two indices in
        1..K, sigmas of the wrong length or for unknown names.
    """
    where = f"{source}: category {category.get('name', category.get('id'))!r}"
    names = category.get("keypoints")
    if not isinstance(names, list) or not names:
        raise SkeletonError(f"{where} has no 'keypoints' names (a keypoint category lists "
                            "the names of its points in array order)")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise SkeletonError(f"{where}: 'keypoints' must be non-empty strings, got {names!r}")
    names = [n.strip() for n in names]
    warnings: List[str] = []
    known = match_known_layout(names)
    if known is not None:
        if sigmas is not None:
            warnings.append(f"{source}: --sigmas ignored: the names match the known layout "
                            f"{known[0].name!r}, which has its own sigmas")
        return known[0], known[1], warnings
    K = len(names)
    pairs = category.get("skeleton") or []
    if not isinstance(pairs, list):
        raise SkeletonError(f"{where}: 'skeleton' must be a list of [a, b] pairs")
    limbs = []
    for i, p in enumerate(pairs):
        if (not isinstance(p, (list, tuple)) or len(p) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in p)):
            raise SkeletonError(f"{where}: skeleton entry #{i} {p!r} is not a pair of "
                                "keypoint numbers")
        if not all(1 <= v <= K for v in p):
            raise SkeletonError(f"{where}: skeleton entry #{i} {p!r} is out of range: "
                                f"COCO skeletons number the {K} keypoints 1..{K}")
        if p[0] == p[1]:
            raise SkeletonError(f"{where}: skeleton entry #{i} {p!r} joins a keypoint to "
                                "itself")
        limb = (names[p[0] - 1], names[p[1] - 1])
        if limb not in limbs and limb[::-1] not in limbs:
            limbs.append(limb)
    flips = infer_flip_pairs(names)
    # A horizontal flip maps every limb onto a limb; add the mirror a file leaves out.
    fmap = dict(flips + tuple((b, a) for a, b in flips))
    for a, b in list(limbs):
        m = (fmap.get(a, a), fmap.get(b, b))
        if m not in limbs and m[::-1] not in limbs:
            limbs.append(m)
            warnings.append(f"{source}: added limb {list(m)}, the mirror of {[a, b]} "
                            "(a flipped image must have the same limbs)")
    sig = _layout_sigmas(names, sigmas, where, warnings)
    if name in _REGISTRY:
        # A custom layout under a shipped name would pick up that layout's conversions.
        warnings.append(f"{source}: layout name {name!r} is a shipped layout's (with other "
                        f"keypoints); the file's layout is named {name + '_custom'!r}")
        name = name + "_custom"
    return (Skeleton(name, names, limbs, flips, sig),
            np.arange(K, dtype=np.int64), warnings)


def _layout_sigmas(names, sigmas, where, warnings):
    if sigmas is None:
        table = {}
        for ln in _KNOWN_FILE_LAYOUTS:
            table.update(_REGISTRY[ln].sigmas or {})
        out, dflt = {}, []
        for n in names:
            c = canonical_name(n)
            c = {"head": "head_top"}.get(c, c)
            if c in table:
                out[n] = table[c]
            else:
                out[n] = DEFAULT_SIGMA
                dflt.append(n)
        if dflt:
            warnings.append(f"{where}: no OKS sigmas given (--sigmas FILE); "
                            f"{DEFAULT_SIGMA} (the mean COCO sigma) used for {dflt}, known "
                            "body keypoints take their COCO/CrowdPose sigma")
        return out
    if isinstance(sigmas, Mapping):
        unknown = sorted(set(sigmas) - set(names))
        missing = [n for n in names if n not in sigmas]
        if unknown or missing:
            raise SkeletonError(f"{where}: sigmas must name every keypoint; missing "
                                f"{missing}, unknown {unknown}")
        vals = [sigmas[n] for n in names]
    else:
        vals = list(sigmas)
        if len(vals) != len(names):
            raise SkeletonError(f"{where}: {len(vals)} sigmas for {len(names)} keypoints")
    for n, v in zip(names, vals):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 10:
            raise SkeletonError(f"{where}: sigma of {n!r} must be a positive number, got {v!r}")
    return {n: float(v) for n, v in zip(names, vals)}
