"""From heatmaps and Part Affinity Fields to people: peaks, limb candidates, assembly.

The algorithm is CMU's (Cao et al., OpenPose) with two deliberate changes, both
documented where they happen:

* the peak finder returns exactly one peak per plateau (flat tops appear on near-perfect
  maps: a keypoint on a cell centre or half-way between two, summed-and-clipped
  Gaussians), and refines it below cell resolution, so decoding at stride resolution
  loses no accuracy against decoding upsampled maps;
* assembly handles limbs in a breadth-first tree order (no-start limbs last) and fills
  either missing endpoint, so skeletons whose limbs point towards the root (MPI-15's
  head_top -> upper_neck) or custom layouts decode too.

Assembly modes (``Decoder(assembly=...)``, config ``test.assembly``):

* ``'crowd'`` (default): (1) every scored limb candidate is kept
  (:func:`connect_limbs` with ``match=False``); (2) per limb, the one-to-one matching
  with the largest total score (:func:`match_limbs`) replaces CMU's greedy one, because
  side-by-side limbs of two people share their PAF and a cross pair often scores a hair
  above both true pairs; (3) CMU's tree pass groups the matched pairs, keeping every
  fragment; (4) one best-first pass over ALL candidates (:func:`assemble_crowd`)
  attaches free peaks, merges fragments whose union holds one peak per keypoint, and
  lets a person missing a keypoint share a peak another person holds (two keypoints
  within a cell give one peak; without sharing, one person loses it and the chain
  behind it). People standing apart come out as with ``'cmu'``; on synthetic crowds
  (tools/bench/bench_ceiling.py, 40 images of 5-15 people overlapping 30-70 %) ceiling
  AP 0.980 against 0.954 clean, 0.910 against 0.862 on noisy maps, at the same cost.
* ``'cmu'``: OpenPose's rule: greedy matching limb by limb, then :func:`assemble`.

Peak cap (``max_peaks``, default 64 per keypoint, config ``test.max_peaks``): when a
keypoint has more peaks, only the highest-valued ones are kept (ties: raster order) and
the rest are dropped before any limb is scored; people beyond the 64th of one keypoint
type lose that keypoint. Limb scoring costs O(peaks^2) per limb, so without a cap the
maps of an untrained network (uniform noise, ~930 peaks per keypoint on 80x60 maps) took
1.7 s and gave 1,121 people; capped: 13 ms CPU and 20 people. Ground-truth maps of real
and synthetic images never reach the cap, so their AP is unchanged.

Coordinates: a map cell g (at the resolution the decoder works at, ``stride`` input
pixels per cell) is centred at input pixel ``stride * g + (stride - 1) / 2``; people come
back in those input pixels.

Accuracy (COCOeval AP of decoded ground-truth maps of the 4-image COCO sample at stride
8, tests/test_decode.py): 0.991 at stride resolution with sub-cell refinement (either
refinement, either PAF sampling), 0.990 on maps upsampled x8 first (``upsample=8``,
CMU's way, ~150 ms per image instead of < 1 ms), 0.867 without refinement. The one
imperfect person has a wrist annotated without its elbow, which no limb can attach. With
Gaussian noise (std 0.02) and/or blur (0.5 cell) on the maps: 0.990-0.991. Heavy noise
(0.05 and blur 0.7) needs more smoothing: 0.80 with ``sigma=3`` vs 0.98 with
``sigma=5`` (5-seed means); but on synthetic pairs of strongly overlapping people (12-40
px apart) keypoint recall is 0.91 with ``sigma=3``, 0.80 with ``sigma=5`` and 0.87
upsampled, so the default stays CMU's 3.

Person score (``scores``): ``total / num_parts`` where ``total`` is the sum of the
heatmap values of the person's peaks plus the scores of the limbs that joined them. It
is the quantity ``min_score`` thresholds (CMU's "mean score" rule), and the score the
COCO evaluation ranks people by.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

#: How a decoded person's score (what COCO evaluation ranks detections by) is computed.
PERSON_SCORE = ("total / num_parts: (sum of the person's peak heatmap values + sum of the "
                "PAF scores of the limbs that joined them) / number of parts found (CMU)")

from ..skeleton import Skeleton, get_skeleton

try:
    from . import _assemble
except ImportError as e:  # pragma: no cover - depends on the build
    raise ImportError(
        "mxpose.decode needs its compiled kernels (mxpose.decode._assemble). Build them "
        "with: MXPOSE_ONLY_EXT=decode._assemble python setup.py build_ext --inplace "
        f"(or pip install --no-build-isolation -e .). Original error: {e}") from e

__all__ = ["Decoder", "decode", "find_peaks", "connect_limbs", "assemble", "assemble_crowd",
           "match_limbs", "limb_order", "cap_peaks", "gaussian_kernel", "smooth_maps",
           "REFINE_MODES", "SAMPLING_MODES", "ASSEMBLY_MODES", "DecodeInfo"]

REFINE_MODES = {"none": 0, "quadratic": 1, "log": 2}
SAMPLING_MODES = {"nearest": 0, "bilinear": 1}
#: Assembly modes of :class:`Decoder` (see :func:`assemble` and :func:`assemble_crowd`).
ASSEMBLY_MODES = ("crowd", "cmu")


def _f32(a, name, ndim):
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


def gaussian_kernel(sigma_cells: float) -> np.ndarray:
    """Normalised float32 1-D Gaussian of ``sigma_cells`` (radius ceil(3 sigma), >= 1);
    a single tap (no smoothing) when ``sigma_cells <= 0``."""
    if sigma_cells <= 0:
        return np.ones(1, dtype=np.float32)
    r = max(1, int(math.ceil(3.0 * sigma_cells)))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma_cells) ** 2)
    return (k / k.sum()).astype(np.float32)


def smooth_maps(maps: np.ndarray, sigma_cells: float) -> np.ndarray:
    """Gaussian-smooth each channel of ``maps`` (C, H, W); returns a float32 copy."""
    maps = _f32(maps, "maps", 3)
    kernel = gaussian_kernel(sigma_cells)
    return _smooth(maps, kernel) if len(kernel) > 1 else maps.copy()


def _smooth(maps: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable smoothing of float32 (C, H, W) maps with a 1-D kernel (compiled)."""
    out = np.empty_like(maps)
    _assemble.smooth(maps, out, kernel, np.empty(maps.shape[1:], dtype=np.float32))
    return out


def _peaks(sm: np.ndarray, raw: np.ndarray, thre1: float, refine: str):
    """The compiled peak finder on smoothed ``sm`` / raw ``raw`` (K, H, W) maps.
    Returns ``(peaks (P, 3), counts (K,))``."""
    K, h, w = raw.shape
    counts = np.zeros(K, dtype=np.int32)
    stamp = np.full(h * w, -1, dtype=np.int32)
    cells = np.empty(h * w, dtype=np.int32)
    # Peaks of a channel never touch each other (4-neighbourhood), so a channel holds at
    # most ceil(h * w / 2): one pass always fits (a retry would double the cost of a
    # noisy map, the case where it matters).
    cap = K * ((h * w + 1) // 2)
    out = np.empty((cap, 3), dtype=np.float32)
    n = _assemble.find_peaks(sm, raw, float(thre1), REFINE_MODES[refine], out, counts,
                             stamp, cells)
    return out[:n], counts


def cap_peaks(peaks: np.ndarray, counts: np.ndarray, max_peaks: int):
    """Keep at most ``max_peaks`` peaks per keypoint: the highest-valued ones (ties: the
    earlier in raster order), still grouped by keypoint in raster order.

    ``max_peaks <= 0`` keeps all. Returns ``(peaks, counts)`` (the inputs themselves when
    no keypoint is over the cap).
    """
    if max_peaks <= 0 or len(counts) == 0 or counts.max() <= max_peaks:
        return peaks, counts
    offsets = np.concatenate([[0], np.cumsum(counts)])
    keep = []
    for k in np.flatnonzero(counts):
        idx = np.arange(offsets[k], offsets[k + 1])
        if len(idx) > max_peaks:
            # Stable sort on -value keeps raster order among equal values.
            idx = np.sort(idx[np.argsort(-peaks[idx, 2], kind="stable")[:max_peaks]])
        keep.append(idx)
    counts = np.minimum(counts, max_peaks).astype(np.int32)
    return np.ascontiguousarray(peaks[np.concatenate(keep)]), counts


def find_peaks(heatmaps: np.ndarray, num_keypoints: Optional[int] = None, thre1: float = 0.1,
               sigma_cells: float = 0.375, refine: str = "log", max_peaks: int = 0):
    """Peaks of the keypoint heatmaps, exactly one per local-maximum plateau.

    Parameters
    ----------
    heatmaps : ndarray, (K+1, H, W) or (K, H, W)
        Only the first ``num_keypoints`` channels are searched (background is last).
    num_keypoints : int, optional
        K; defaults to all channels but the last.
    thre1 : float
        A peak's smoothed value must exceed this.
    sigma_cells : float
        Smoothing sigma in cells (CMU's 3 input pixels is ``3 / stride``); 0 = none.
    refine : {'log', 'quadratic', 'none'}
        Sub-cell refinement: vertex of a parabola through the peak and its two
        neighbours on each axis, fitted to log values ('log', exact for Gaussian peaks)
        or to the values ('quadratic'). A plateau's peak is its centroid, refined only
        along an axis where the plateau is one cell thick.
    max_peaks : int
        At most this many peaks per keypoint, the highest-valued (:func:`cap_peaks`);
        0 = no cap.

    Returns
    -------
    peaks : ndarray, float32, (P, 3)
        x, y in cells (0-based, sub-cell) and the raw heatmap value at the peak cell,
        grouped by keypoint, in raster order within a keypoint.
    counts : ndarray, int32, (K,)
        Number of peaks per keypoint.
    """
    heatmaps = _f32(heatmaps, "heatmaps", 3)
    if num_keypoints is None:
        num_keypoints = heatmaps.shape[0] - 1
    if not 0 < num_keypoints <= heatmaps.shape[0]:
        raise ValueError(f"num_keypoints={num_keypoints} but heatmaps have "
                         f"{heatmaps.shape[0]} channels")
    if refine not in REFINE_MODES:
        raise ValueError(f"refine must be one of {sorted(REFINE_MODES)}, got {refine!r}")
    raw = heatmaps[:num_keypoints]
    sm = smooth_maps(raw, sigma_cells) if sigma_cells > 0 else raw
    return cap_peaks(*_peaks(sm, raw, thre1, refine), int(max_peaks))


def limb_order(skeleton) -> np.ndarray:
    """Order in which assembly visits the limbs: breadth first from the keypoint with
    most (normal) limbs, ties in limb order, no-start limbs last; limbs not connected to
    that keypoint follow in index order. (L,) int32."""
    skel = get_skeleton(skeleton)
    li = skel.limb_index
    nostart = set(int(i) for i in skel.no_start_limb_index)
    normal = [l for l in range(len(li)) if l not in nostart]
    big = np.iinfo(np.int64).max // 2
    depth = np.full(skel.num_keypoints, big, dtype=np.int64)
    if normal:
        deg = np.zeros(skel.num_keypoints, dtype=np.int64)
        for l in normal:
            deg[li[l, 0]] += 1
            deg[li[l, 1]] += 1
        root = int(np.argmax(deg))
        depth[root] = 0
        frontier = [root]
        while frontier:
            nxt = []
            for kp in frontier:
                for l in normal:
                    a, b = li[l]
                    for u, v in ((a, b), (b, a)):
                        if u == kp and depth[v] > depth[u] + 1:
                            depth[v] = depth[u] + 1
                            nxt.append(v)
            frontier = nxt
    normal.sort(key=lambda l: (min(depth[li[l, 0]], depth[li[l, 1]]), l))
    return np.array(normal + sorted(nostart), dtype=np.int32)


def connect_limbs(peaks: np.ndarray, counts: np.ndarray, pafs: np.ndarray, skeleton,
                  thre2: float = 0.05, n_samples: int = 10, min_frac: float = 0.8,
                  image_height: Optional[float] = None, stride: float = 8.0,
                  sampling: str = "bilinear", order: Optional[np.ndarray] = None,
                  match: bool = True) -> np.ndarray:
    """Limb candidates scored on the PAFs and matched greedily (CMU's rule).

    Parameters
    ----------
    peaks, counts : from :func:`find_peaks` (cells).
    pafs : ndarray, (2L, H, W)
    skeleton : Skeleton or name
    thre2 : float
        A sample counts as supporting the limb when its projected PAF exceeds this.
    n_samples : int
        Points sampled from A to B, both ends included (>= 2).
    min_frac : float
        A candidate needs more than ``min_frac * n_samples`` supporting samples ...
    image_height : float, optional
        ... and a positive score = mean projection + min(0.5 * image_height / length - 1,
        0), lengths in input pixels; defaults to H * stride.
    stride : float
        Input pixels per cell (converts lengths to pixels).
    sampling : {'bilinear', 'nearest'}
        How the PAF is read at the sample points. CMU rounds to the nearest pixel of
        maps upsampled to the image; at stride resolution bilinear reads are as exact on
        clean maps and more robust on noisy ones (see tests/test_decode.py).
    order : (L,) int, optional
        Limb order (default :func:`limb_order`).
    match : bool
        True: CMU's greedy matching per limb (each peak at most once per limb). False:
        every candidate, for :func:`assemble_crowd` (up to nA * nB rows per limb are
        allocated: keep a peak cap, see :func:`cap_peaks`).

    Returns
    -------
    ndarray, float64, (C, 4)
        Rows [limb, global peak index of A, of B, score], limbs in ``order``, each limb's
        connections by descending score (ties: A, then B).
    """
    skel = get_skeleton(skeleton)
    pafs = _f32(pafs, "pafs", 3)
    if pafs.shape[0] != skel.num_pafs:
        raise ValueError(f"pafs have {pafs.shape[0]} channels; skeleton {skel.name!r} "
                         f"needs {skel.num_pafs} (2 per limb)")
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {sorted(SAMPLING_MODES)}, got {sampling!r}")
    counts = np.ascontiguousarray(counts, dtype=np.int32)
    if counts.shape != (skel.num_keypoints,):
        raise ValueError(f"counts must have shape ({skel.num_keypoints},), got {counts.shape}")
    offsets = np.zeros(skel.num_keypoints + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    peaks = np.ascontiguousarray(peaks, dtype=np.float32).reshape(-1, 3)
    if len(peaks) != offsets[-1]:
        raise ValueError(f"{len(peaks)} peaks but counts sum to {offsets[-1]}")
    order = limb_order(skel) if order is None else np.ascontiguousarray(order, dtype=np.int32)
    li = skel.limb_index
    out = np.empty((_connect_rows(counts, li, match), 4), dtype=np.float64)
    if image_height is None:
        image_height = pafs.shape[1] * stride
    n = _assemble.connect_limbs(peaks, offsets, pafs, li, order, int(n_samples), float(thre2),
                                float(min_frac), float(image_height), float(stride),
                                SAMPLING_MODES[sampling], out, int(bool(match)))
    return out[:n]


def _connect_rows(counts, li, match):
    """Rows :func:`connect_limbs` may write: min(nA, nB) per limb matched, nA * nB not."""
    ca, cb = counts[li[:, 0]].astype(np.int64), counts[li[:, 1]].astype(np.int64)
    return int((np.minimum(ca, cb) if match else ca * cb).sum())


def assemble(connections: np.ndarray, peaks: np.ndarray, skeleton, min_parts: int = 4,
             min_score: float = 0.4):
    """Group connections into people (CMU's demo rule, generalised).

    Each connection (a, b) of limb (ka, kb), in the given order, looks for the people
    holding a in slot ka or b in slot kb: one person -> it gets the missing endpoint (a
    slot holding a different peak is never overwritten); two people with no keypoint
    slot in common -> merged; none -> a new person, unless the limb is one of the
    skeleton's no-start limbs; anything else is ignored. People with fewer than
    ``min_parts`` parts or ``total / parts < min_score`` are dropped.

    Returns
    -------
    parts : ndarray, int32, (N, K)
        Global peak index per keypoint, -1 where missing.
    total : ndarray, float64, (N,)
        Sum of peak values and limb scores.
    count : ndarray, int32, (N,)
        Number of parts.
    """
    skel = get_skeleton(skeleton)
    conns = np.ascontiguousarray(connections, dtype=np.float64).reshape(-1, 4)
    peaks = np.ascontiguousarray(peaks, dtype=np.float32).reshape(-1, 3)
    n = len(conns)
    no_start = np.zeros(skel.num_limbs, dtype=np.uint8)
    no_start[skel.no_start_limb_index] = 1
    parts = np.empty((n, skel.num_keypoints), dtype=np.int32)
    total = np.empty(n, dtype=np.float64)
    count = np.empty(n, dtype=np.int32)
    alive = np.empty(n, dtype=np.uint8)
    if n and (conns[:, 1:3].max() >= len(peaks) or conns[:, 1:3].min() < 0):
        raise ValueError("connections refer to peaks that do not exist")
    m = _assemble.assemble(conns, peaks, skel.limb_index, no_start, int(min_parts),
                           float(min_score), parts, total, count, alive)
    return parts[:m], total[:m], count[:m]


def match_limbs(candidates: np.ndarray, num_peaks: Optional[int] = None) -> np.ndarray:
    """Per limb, the one-to-one matching of its candidates with the largest total score.

    ``candidates`` (C, 4) as :func:`connect_limbs` returns them with ``match=False``
    (each limb's rows together). CMU's greedy matching takes the best pair first; when
    two people's limbs of one type lie side by side, a cross pair can score a hair above
    both true pairs and the greedy rule then keeps it and loses one true pair, where the
    optimal matching keeps both (Hungarian algorithm, compiled). Returns the matched rows,
    limbs in the input order, each limb's rows by descending score.
    """
    conns = np.ascontiguousarray(candidates, dtype=np.float64).reshape(-1, 4)
    if num_peaks is None:
        num_peaks = int(conns[:, 1:3].max()) + 1 if len(conns) else 0
    if len(conns) and (conns[:, 1:3].min() < 0 or conns[:, 1:3].max() >= num_peaks):
        raise ValueError("candidates refer to peaks that do not exist")
    out = np.empty_like(conns)
    n = _assemble.match_limbs(conns, int(num_peaks), out)
    return out[:n]


def assemble_crowd(candidates: np.ndarray, peaks: np.ndarray, skeleton, min_parts: int = 4,
                   min_score: float = 0.4, init=None, share: bool = True):
    """Grow and join people over all limb candidates, best first; share coincident peaks.

    ``candidates`` are all scored pairs (:func:`connect_limbs` with ``match=False``);
    ``init`` = (parts (N0, K), total (N0,)) are starting people, e.g. from
    :func:`assemble` (each peak in at most one). Taken by descending score over every
    limb type, a candidate (a, b) joins a person holding a (or a alone) with a person
    holding b (or b alone) when the union has at most one peak per keypoint: this
    attaches parts and merges fragments that a limb-by-limb pass left apart. With
    ``share``, a candidate that cannot join lets a person lacking the other endpoint's
    keypoint take that peak too, when exactly one person holds it: in a crowd, two
    people's keypoints within a cell give ONE peak, and without sharing one of them
    loses the keypoint and the chain behind it. A peak is held by at most two people.
    Filters and outputs as :func:`assemble` (see the kernel's docstring for the scores).
    """
    skel = get_skeleton(skeleton)
    conns = np.ascontiguousarray(candidates, dtype=np.float64).reshape(-1, 4)
    peaks = np.ascontiguousarray(peaks, dtype=np.float32).reshape(-1, 3)
    if len(conns) and (conns[:, 1:3].max() >= len(peaks) or conns[:, 1:3].min() < 0):
        raise ValueError("candidates refer to peaks that do not exist")
    no_start = np.zeros(skel.num_limbs, dtype=np.uint8)
    no_start[skel.no_start_limb_index] = 1
    return _crowd(conns, peaks, skel.limb_index, no_start, skel.num_keypoints, min_parts,
                  min_score, init, share)


def _crowd(conns, peaks, li, no_start, K, min_parts, min_score, init, share):
    n0 = 0 if init is None else len(init[0])
    n = n0 + len(conns)
    parts = np.empty((n, K), dtype=np.int32)
    total = np.empty(n, dtype=np.float64)
    if n0:
        parts[:n0] = init[0]
        total[:n0] = init[1]
    count = np.empty(n, dtype=np.int32)
    alive = np.empty(n, dtype=np.uint8)
    own = np.empty((len(peaks), 2), dtype=np.int32)
    m = _assemble.assemble_crowd(conns, peaks, li, no_start, n0, int(bool(share)),
                                 int(min_parts), float(min_score), parts, total, count,
                                 alive, own)
    return parts[:m], total[:m], count[:m]


def _cmu(conns, peaks, li, no_start, K, min_parts, min_score):
    n = len(conns)
    parts = np.empty((n, K), dtype=np.int32)
    total = np.empty(n, dtype=np.float64)
    count = np.empty(n, dtype=np.int32)
    alive = np.empty(n, dtype=np.uint8)
    m = _assemble.assemble(conns, peaks, li, no_start, int(min_parts), float(min_score),
                           parts, total, count, alive)
    return parts[:m], total[:m], count[:m]


class DecodeInfo(NamedTuple):
    """Intermediate results of one decode (cells at the working resolution)."""
    peaks: np.ndarray        # (P, 3) x, y, value
    counts: np.ndarray       # (K,)
    connections: np.ndarray  # (C, 4) limb, a, b, score (crowd mode: every candidate)
    parts: np.ndarray        # (N, K) peak index or -1
    total: np.ndarray        # (N,)
    count: np.ndarray        # (N,)
    stride: float            # input pixels per cell of the working resolution


class Decoder:
    """Reusable decoder for one skeleton and one set of thresholds.

    Parameters
    ----------
    skeleton : Skeleton, name or definition dict
    thre1 : float
        Peak threshold on the smoothed heatmap.
    thre2 : float
        PAF support threshold per sample.
    sigma : float
        Heatmap smoothing sigma in INPUT pixels (CMU: 3); divided by the working stride.
        Larger values (5-6) resist noisy maps better but merge the peaks of strongly
        overlapping people sooner (measurements in the module docstring).
    refine : {'log', 'quadratic', 'none'}
        Sub-cell peak refinement (see :func:`find_peaks`).
    sampling : {'bilinear', 'nearest'}
        PAF sampling (see :func:`connect_limbs`); 'nearest' is CMU's exact rule.
    n_samples, min_frac : int, float
        CMU's 10 samples, more than 80 % above ``thre2``.
    min_parts, min_score : int, float
        People with fewer parts or a lower mean score are dropped.
    upsample : int
        1 (default): decode at the maps' own resolution. f > 1: first resize the maps by
        f with bicubic interpolation (CMU's way), then decode at stride / f. Slower, and
        on ground-truth maps no more accurate than sub-cell refinement (see the tests).
    assembly : {'crowd', 'cmu'}
        'crowd' (default): :func:`assemble_crowd` on every limb candidate. 'cmu':
        OpenPose's limb-by-limb greedy matching and :func:`assemble`.
    max_peaks : int
        At most this many peaks per keypoint, the highest-valued ones (see
        :func:`cap_peaks`); bounds the cost on maps with many spurious maxima (an
        untrained network). 0 = no cap. OpenPose caps at 127 per part.
    """

    def __init__(self, skeleton="openpose_coco18", thre1=0.1, thre2=0.05, sigma=3.0,
                 refine="log", sampling="bilinear", n_samples=10, min_frac=0.8, min_parts=4,
                 min_score=0.4, upsample=1, assembly="crowd", max_peaks=64):
        self.skeleton: Skeleton = get_skeleton(skeleton)
        if refine not in REFINE_MODES:
            raise ValueError(f"refine must be one of {sorted(REFINE_MODES)}, got {refine!r}")
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {sorted(SAMPLING_MODES)}, got {sampling!r}")
        if int(upsample) != upsample or upsample < 1:
            raise ValueError(f"upsample must be a positive integer, got {upsample!r}")
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {n_samples}")
        if assembly not in ASSEMBLY_MODES:
            raise ValueError(f"assembly must be one of {list(ASSEMBLY_MODES)}, got {assembly!r}")
        if int(max_peaks) != max_peaks or max_peaks < 0:
            raise ValueError(f"max_peaks must be an integer >= 0, got {max_peaks!r}")
        self.assembly, self.max_peaks = assembly, int(max_peaks)
        self.thre1, self.thre2, self.sigma = float(thre1), float(thre2), float(sigma)
        self.refine, self.sampling = refine, sampling
        self.n_samples, self.min_frac = int(n_samples), float(min_frac)
        self.min_parts, self.min_score = int(min_parts), float(min_score)
        self.upsample = int(upsample)
        sk = self.skeleton
        self._order = limb_order(sk)
        self._no_start = np.zeros(sk.num_limbs, dtype=np.uint8)
        self._no_start[sk.no_start_limb_index] = 1
        self._li = np.ascontiguousarray(sk.limb_index, dtype=np.int32)
        self._kernels = {}

    def __repr__(self):
        return (f"Decoder({self.skeleton.name!r}, thre1={self.thre1}, thre2={self.thre2}, "
                f"sigma={self.sigma}, refine={self.refine!r}, sampling={self.sampling!r}, "
                f"upsample={self.upsample}, assembly={self.assembly!r}, "
                f"max_peaks={self.max_peaks})")

    def _check(self, heatmaps, pafs):
        sk = self.skeleton
        heatmaps = _f32(heatmaps, "heatmaps", 3)
        pafs = _f32(pafs, "pafs", 3)
        if heatmaps.shape[0] not in (sk.num_keypoints, sk.num_heatmaps):
            raise ValueError(f"heatmaps have {heatmaps.shape[0]} channels; skeleton "
                             f"{sk.name!r} needs {sk.num_heatmaps} (K + background)")
        if pafs.shape[0] != sk.num_pafs:
            raise ValueError(f"pafs have {pafs.shape[0]} channels; skeleton {sk.name!r} "
                             f"needs {sk.num_pafs} (2 per limb)")
        if heatmaps.shape[1:] != pafs.shape[1:]:
            raise ValueError(f"heatmaps {heatmaps.shape[1:]} and pafs {pafs.shape[1:]} "
                             "differ in size")
        return heatmaps, pafs

    def _resize(self, maps):
        import cv2
        f = self.upsample
        c, h, w = maps.shape
        out = np.empty((c, h * f, w * f), dtype=np.float32)
        # Channel by channel: a (C, H, W) stack would need two full transposes for cv2.
        for i in range(c):
            out[i] = cv2.resize(maps[i], (w * f, h * f), interpolation=cv2.INTER_CUBIC)
        return out

    def __call__(self, heatmaps, pafs, stride: float = 8.0, image_height: Optional[float] = None,
                 return_info: bool = False):
        """Decode one image's maps.

        Parameters
        ----------
        heatmaps : ndarray, (K+1, H, W) (or (K, H, W))
        pafs : ndarray, (2L, H, W)
        stride : float
            Input pixels per map cell (8 for the network output; 1 for maps already
            upsampled to the input). Cell g is centred at input pixel
            ``stride * g + (stride - 1) / 2``.
        image_height : float, optional
            Input height in pixels for the limb-length prior; default H * stride.
        return_info : bool
            Also return a :class:`DecodeInfo` with the intermediate results.

        Returns
        -------
        people : ndarray, float32, (N, K, 3)
            x, y in input pixels and the peak's heatmap value; zeros where missing.
        scores : ndarray, float32, (N,)
            total / num_parts (see the module docstring).
        """
        heatmaps, pafs = self._check(heatmaps, pafs)
        sk = self.skeleton
        K = sk.num_keypoints
        stride = float(stride)
        if image_height is None:
            image_height = heatmaps.shape[1] * stride
        if self.upsample > 1:
            heatmaps = self._resize(heatmaps[:K])
            pafs = self._resize(pafs)
            stride = stride / self.upsample
        raw = heatmaps[:K]
        sigma_cells = self.sigma / stride
        kernel = self._kernels.get(sigma_cells)
        if kernel is None:
            kernel = self._kernels[sigma_cells] = gaussian_kernel(sigma_cells)
        sm = _smooth(raw, kernel) if len(kernel) > 1 else raw
        peaks, counts = cap_peaks(*_peaks(sm, raw, self.thre1, self.refine), self.max_peaks)
        offsets = np.zeros(K + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        li = self._li
        match = self.assembly == "cmu"
        conns = np.empty((_connect_rows(counts, li, match), 4), dtype=np.float64)
        nc = _assemble.connect_limbs(peaks, offsets, pafs, li, self._order, self.n_samples,
                                     self.thre2, self.min_frac, float(image_height), stride,
                                     SAMPLING_MODES[self.sampling], conns, int(match))
        conns = conns[:nc]
        if match:
            parts, total, count = _cmu(conns, peaks, li, self._no_start, K, self.min_parts,
                                       self.min_score)
        else:
            # Crowd: optimal matching per limb, CMU's tree pass on it (keeping every
            # fragment), then one best-first pass over all candidates (joins, shares).
            matched = np.empty_like(conns)
            nm = _assemble.match_limbs(conns, len(peaks), matched)
            init = _cmu(matched[:nm], peaks, li, self._no_start, K, 0, -np.inf)
            parts, total, count = _crowd(conns, peaks, li, self._no_start, K,
                                         self.min_parts, self.min_score, init[:2], True)
        m = len(parts)
        people = np.zeros((m, K, 3), dtype=np.float32)
        lab = parts >= 0
        sel = peaks[parts[lab]]
        off = (stride - 1.0) / 2.0
        people[lab, 0] = sel[:, 0] * stride + off
        people[lab, 1] = sel[:, 1] * stride + off
        people[lab, 2] = sel[:, 2]
        scores = (total / np.maximum(count, 1)).astype(np.float32)
        if return_info:
            return people, scores, DecodeInfo(peaks, counts.copy(), conns, parts, total,
                                              count, stride)
        return people, scores


_CACHE = {}


def decode(heatmaps, pafs, skeleton="openpose_coco18", stride: float = 8.0,
           image_height: Optional[float] = None, **params):
    """Decode one image's heatmaps (K+1, H, W) and PAFs (2L, H, W) into people.

    Convenience over :class:`Decoder` (``params`` are its keyword arguments; decoders are
    cached per skeleton and parameters). Returns ``people`` (N, K, 3) float32 (x, y in
    input pixels, peak value; zeros where missing) and ``scores`` (N,) float32.
    """
    skel = get_skeleton(skeleton)
    key = (skel.name, id(skel), tuple(sorted(params.items())))
    dec = _CACHE.get(key)
    if dec is None or dec.skeleton is not skel:
        if len(_CACHE) > 32:
            _CACHE.clear()
        dec = _CACHE[key] = Decoder(skel, **params)
    return dec(heatmaps, pafs, stride=stride, image_height=image_height)
