"""Plain-NumPy twins of the decoder (mxpose.decode) and a small ground-truth map renderer.

The decoder twin runs the SAME algorithm as the compiled kernels in
``cython_ext/decode/_assemble.pyx``, with the same floating-point operation order where
it matters (float32 smoothing, float64 limb scores, explicit tie-breaks), so tests can
demand identical peaks, identical connections and identical people. It is written for
clarity first; loops over plateaus, connections and people are plain Python.

The renderer is deliberately tiny and independent of ``mxpose.targets``: Gaussian
heatmaps (max- or sum-and-clip-merged) and averaged unit-vector PAFs on the centred grid
(cell g centred at input pixel ``stride * g + (stride - 1) / 2``).
"""
import itertools
import math

import numpy as np

# ---------------------------------------------------------------------------------------
# Ground-truth renderer
# ---------------------------------------------------------------------------------------


def grid_coords(n, stride):
    """Input-pixel coordinates of the centres of ``n`` cells."""
    return stride * np.arange(n, dtype=np.float64) + (stride - 1) / 2.0


def render_heatmaps(people, num_keypoints, height, width, stride=8, sigma=7.0, merge="max"):
    """(K+1, H, W) float32 Gaussian heatmaps of labelled keypoints; background last.

    ``people`` is (N, K, 3) in input pixels; ``sigma`` in input pixels; ``merge`` is
    'max' or 'sum_clip' (sum then clip at 1, CMU's rendering).
    """
    people = np.asarray(people, dtype=np.float64).reshape(-1, num_keypoints, 3)
    xs = grid_coords(width, stride)
    ys = grid_coords(height, stride)
    maps = np.zeros((num_keypoints + 1, height, width), dtype=np.float64)
    for person in people:
        for k in range(num_keypoints):
            x, y, v = person[k]
            if v <= 0:
                continue
            g = np.exp(-((xs[None, :] - x) ** 2 + (ys[:, None] - y) ** 2) / (2.0 * sigma ** 2))
            if merge == "max":
                maps[k] = np.maximum(maps[k], g)
            else:
                maps[k] += g
    if merge != "max":
        np.clip(maps, 0.0, 1.0, out=maps)
    maps[num_keypoints] = np.maximum(1.0 - maps[:num_keypoints].max(axis=0), 0.0)
    return maps.astype(np.float32)


def render_pafs(people, limb_index, height, width, stride=8, width_cells=1.0):
    """(2L, H, W) float32 PAFs: the limb's unit vector on cells within ``width_cells``
    of the segment (a capsule), averaged over the people covering a cell."""
    limb_index = np.asarray(limb_index)
    people = np.asarray(people, dtype=np.float64)
    num_limbs = len(limb_index)
    # Cell coordinates of the cell centres are simply 0..W-1, 0..H-1.
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float64),
                         np.arange(height, dtype=np.float64))
    off = (stride - 1) / 2.0
    out = np.zeros((2 * num_limbs, height, width), dtype=np.float64)
    for l, (ka, kb) in enumerate(limb_index):
        acc = np.zeros((2, height, width))
        cnt = np.zeros((height, width))
        for person in people:
            if person[ka, 2] <= 0 or person[kb, 2] <= 0:
                continue
            ax, ay = (person[ka, :2] - off) / stride
            bx, by = (person[kb, :2] - off) / stride
            vx, vy = bx - ax, by - ay
            length = math.hypot(vx, vy)
            if length < 1e-9:
                continue
            ux, uy = vx / length, vy / length
            t = np.clip((gx - ax) * ux + (gy - ay) * uy, 0.0, length)
            d = np.hypot(gx - (ax + t * ux), gy - (ay + t * uy))
            on = d <= width_cells
            acc[0][on] += ux
            acc[1][on] += uy
            cnt[on] += 1
        nz = cnt > 0
        out[2 * l][nz] = acc[0][nz] / cnt[nz]
        out[2 * l + 1][nz] = acc[1][nz] / cnt[nz]
    return out.astype(np.float32)


def render_maps(people, skeleton, height, width, stride=8, sigma=7.0, merge="max",
                paf_width=1.0):
    """Heatmaps and PAFs for ``people`` (N, K, 3) on an (H, W) grid."""
    return (render_heatmaps(people, skeleton.num_keypoints, height, width, stride, sigma, merge),
            render_pafs(people, skeleton.limb_index, height, width, stride, paf_width))


# ---------------------------------------------------------------------------------------
# Decoder twin
# ---------------------------------------------------------------------------------------
REFINE = {"none": 0, "quadratic": 1, "log": 2}
_TINY = 1e-10


def gaussian_kernel(sigma_cells):
    """Smoothing taps, written from the rule the decoder documents (not imported from
    it): a 1-D Gaussian of ``sigma_cells`` over radius ceil(3 sigma) (at least 1),
    normalised to sum 1, as float32; one tap of 1 when sigma <= 0.
    tests/test_decode.py compares these taps with the library's."""
    if sigma_cells <= 0:
        return np.ones(1, dtype=np.float32)
    r = max(1, math.ceil(3.0 * sigma_cells))
    taps = [math.exp(-0.5 * (i / sigma_cells) ** 2) for i in range(-r, r + 1)]
    total = math.fsum(taps)
    return np.array([t / total for t in taps], dtype=np.float32)


def smooth_ref(maps, kernel):
    """Separable float32 convolution with edge replication, taps accumulated in order."""
    maps = np.asarray(maps, dtype=np.float32)
    if len(kernel) == 1:
        return maps.copy()
    r = len(kernel) // 2
    _, h, w = maps.shape
    p = np.pad(maps, ((0, 0), (0, 0), (r, r)), mode="edge")
    acc = np.zeros_like(maps)
    for t in range(2 * r + 1):
        acc = acc + kernel[t] * p[:, :, t:t + w]
    p = np.pad(acc, ((0, 0), (r, r), (0, 0)), mode="edge")
    out = np.zeros_like(maps)
    for t in range(2 * r + 1):
        out = out + kernel[t] * p[:, t:t + h, :]
    return out


def _fit(l, c, r, mode):
    """Sub-cell offset of the vertex of the parabola through (-1, l), (0, c), (1, r)."""
    l, c, r = float(l), float(c), float(r)
    if mode == 2:
        if c <= 0.0:
            return 0.0
        l, c, r = math.log(max(l, _TINY)), math.log(c), math.log(max(r, _TINY))
    den = l - 2.0 * c + r
    if den >= 0.0:
        return 0.0
    off = 0.5 * (l - r) / den
    return min(max(off, -0.5), 0.5)


def _tr(v, mode):
    return math.log(max(float(v), _TINY)) if mode == 2 else float(v)


def _fit_edge(c, n, s, kappa, mode):
    """Vertex for a peak on the map's edge, with the other axis' curvature ``kappa``."""
    if not kappa < 0.0 or (mode == 2 and float(c) <= 0.0):
        return 0.0
    beta = s * (_tr(n, mode) - _tr(c, mode) - 0.5 * kappa)
    return min(max(-beta / kappa, -1.0), 1.0)


def _offsets(s, x, y, mode):
    """Sub-cell offsets of an isolated peak at (x, y) of the smoothed map ``s``."""
    h, w = s.shape
    if not mode:
        return 0.0, 0.0
    c = s[y, x]
    ox = oy = kx = ky = 0.0
    hx, hy = 0 < x < w - 1, 0 < y < h - 1
    if hx:
        ox = _fit(s[y, x - 1], c, s[y, x + 1], mode)
        kx = _tr(s[y, x - 1], mode) - 2.0 * _tr(c, mode) + _tr(s[y, x + 1], mode)
    if hy:
        oy = _fit(s[y - 1, x], c, s[y + 1, x], mode)
        ky = _tr(s[y - 1, x], mode) - 2.0 * _tr(c, mode) + _tr(s[y + 1, x], mode)
    if not hx and w > 1 and hy:
        ox = (_fit_edge(c, s[y, 1], 1.0, ky, mode) if x == 0
              else _fit_edge(c, s[y, w - 2], -1.0, ky, mode))
    if not hy and h > 1 and hx:
        oy = (_fit_edge(c, s[1, x], 1.0, kx, mode) if y == 0
              else _fit_edge(c, s[h - 2, x], -1.0, kx, mode))
    return ox, oy


def _fit1(s, x, y, mode, axis):
    """Offset along one axis (plateaus one cell thick along it); no edge rule."""
    h, w = s.shape
    if axis == 0:
        return _fit(s[y, x - 1], s[y, x], s[y, x + 1], mode) if mode and 0 < x < w - 1 else 0.0
    return _fit(s[y - 1, x], s[y, x], s[y + 1, x], mode) if mode and 0 < y < h - 1 else 0.0


def find_peaks_ref(heatmaps, num_keypoints, thre1=0.1, sigma_cells=0.375, refine="log"):
    """Peaks of the first ``num_keypoints`` channels.

    Returns
    -------
    peaks : (P, 3) float32  x, y (cells, sub-cell refined), raw heatmap value
    counts : (K,) int32     peaks per keypoint, peaks grouped by keypoint in order
    """
    mode = REFINE[refine]
    raw = np.asarray(heatmaps, dtype=np.float32)[:num_keypoints]
    sm = smooth_ref(raw, gaussian_kernel(sigma_cells))
    _, h, w = raw.shape
    out, counts = [], []
    for k in range(num_keypoints):
        s = sm[k]
        p = np.pad(s, 1, mode="constant", constant_values=-np.inf)
        c = p[1:-1, 1:-1]
        nb = (p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:])
        ge = c > np.float32(thre1)
        strict = np.ones_like(ge)
        for n in nb:
            ge &= c >= n
            strict &= c > n
        found = []  # (first raster index, x, y, score)
        for y, x in np.argwhere(ge & strict):
            ox, oy = _offsets(s, x, y, mode)
            found.append((y * w + x, x + ox, y + oy, raw[k, y, x]))
        seen = np.zeros((h, w), dtype=bool)
        for y0, x0 in np.argwhere(ge & ~strict):
            if seen[y0, x0]:
                continue
            v = s[y0, x0]
            cells, stack, maximal = [], [(y0, x0)], True
            seen[y0, x0] = True
            while stack:
                y, x = stack.pop()
                cells.append((y, x))
                for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if not (0 <= yy < h and 0 <= xx < w):
                        continue
                    if s[yy, xx] > v:
                        maximal = False
                    elif s[yy, xx] == v and not seen[yy, xx]:
                        seen[yy, xx] = True
                        stack.append((yy, xx))
            if not maximal:
                continue
            ys = np.array([q[0] for q in cells], dtype=np.float64)
            xs = np.array([q[1] for q in cells], dtype=np.float64)
            cx, cy = xs.sum() / len(xs), ys.sum() / len(ys)
            # Representative: the plateau cell nearest the centroid, raster order on ties.
            best = min(cells, key=lambda q: ((q[1] - cx) ** 2 + (q[0] - cy) ** 2, q[0], q[1]))
            ry, rx = best
            px = rx + _fit1(s, rx, ry, mode, 0) if xs.min() == xs.max() else cx
            py = ry + _fit1(s, rx, ry, mode, 1) if ys.min() == ys.max() else cy
            found.append((min(q[0] * w + q[1] for q in cells), px, py, raw[k, ry, rx]))
        found.sort(key=lambda f: f[0])
        counts.append(len(found))
        out.extend((f[1], f[2], f[3]) for f in found)
    peaks = np.array(out, dtype=np.float32).reshape(-1, 3)
    return peaks, np.array(counts, dtype=np.int32)


def _sample_nearest(paf, px, py):
    h, w = paf.shape
    ix = np.clip(np.floor(px + 0.5), 0, w - 1).astype(np.intp)
    iy = np.clip(np.floor(py + 0.5), 0, h - 1).astype(np.intp)
    return paf[iy, ix].astype(np.float64)


def _sample_bilinear(paf, px, py):
    h, w = paf.shape
    px = np.clip(px, 0.0, w - 1.0)
    py = np.clip(py, 0.0, h - 1.0)
    x0 = np.floor(px)
    y0 = np.floor(py)
    fx, fy = px - x0, py - y0
    x0 = x0.astype(np.intp)
    y0 = y0.astype(np.intp)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    p = paf.astype(np.float64)
    top = (1.0 - fx) * p[y0, x0] + fx * p[y0, x1]
    bot = (1.0 - fx) * p[y1, x0] + fx * p[y1, x1]
    return (1.0 - fy) * top + fy * bot


# The limb processing order, spelled out by name (independent of the library's
# ``limb_order``, which tests/test_decode.py compares with it). The pairs are CMU's
# published limb tables (COCO-18: 17 limbs plus the two ear-shoulder limbs that never
# start a person; MPI-15: 14 limbs), arranged in the order assembly visits them: rings
# of growing distance from the keypoint with the most limbs (neck; upper neck for MPI),
# each ring in PAF-channel order, the no-start limbs last.
LIMB_ORDER = {
    "openpose_coco18": [
        ("neck", "r_hip"), ("neck", "l_hip"), ("neck", "r_shoulder"),
        ("neck", "l_shoulder"), ("neck", "nose"),
        ("r_hip", "r_knee"), ("l_hip", "l_knee"), ("r_shoulder", "r_elbow"),
        ("l_shoulder", "l_elbow"), ("nose", "r_eye"), ("nose", "l_eye"),
        ("r_knee", "r_ankle"), ("l_knee", "l_ankle"), ("r_elbow", "r_wrist"),
        ("l_elbow", "l_wrist"), ("r_eye", "r_ear"), ("l_eye", "l_ear"),
        ("r_shoulder", "r_ear"), ("l_shoulder", "l_ear"),          # no-start limbs
    ],
    "openpose_mpi15": [
        ("head_top", "upper_neck"),
        ("upper_neck", "r_shoulder"), ("upper_neck", "l_shoulder"), ("upper_neck", "chest"),
        ("r_shoulder", "r_elbow"), ("l_shoulder", "l_elbow"), ("chest", "r_hip"),
        ("chest", "l_hip"),
        ("r_elbow", "r_wrist"), ("l_elbow", "l_wrist"), ("r_hip", "r_knee"),
        ("l_hip", "l_knee"),
        ("r_knee", "r_ankle"), ("l_knee", "l_ankle"),
    ],
}


def limb_order(skeleton):
    """(L,) limb indices of ``skeleton`` in :data:`LIMB_ORDER`'s order.

    Layouts without a table get the same rule computed here: limbs sorted by the ring
    (distance from the best connected keypoint) of their nearer end, then by index,
    no-start limbs last.
    """
    names = skeleton.keypoints
    pairs = [(names[a], names[b]) for a, b in skeleton.limb_index]
    if skeleton.name in LIMB_ORDER:
        return np.array([pairs.index(p) for p in LIMB_ORDER[skeleton.name]], dtype=np.int32)
    nostart = sorted(int(i) for i in skeleton.no_start_limb_index)
    normal = [l for l in range(len(pairs)) if l not in nostart]
    edges = [tuple(skeleton.limb_index[l]) for l in normal]
    counts = np.bincount(np.ravel(edges), minlength=len(names)) if edges else None
    ring = {int(np.argmax(counts))} if edges else set()
    dist = {k: 0 for k in ring}
    while ring:
        nxt = set()
        for a, b in edges:
            for u, v in ((a, b), (b, a)):
                if u in ring and v not in dist:
                    dist[v] = dist[u] + 1
                    nxt.add(v)
        ring = nxt
    far = len(names) + 1
    key = [min(dist.get(a, far), dist.get(b, far)) for a, b in edges]
    normal = [l for _, l in sorted(zip(key, normal))]
    return np.array(normal + nostart, dtype=np.int32)


def connect_limbs_ref(peaks, counts, pafs, limb_index, order, thre2=0.05, n_samples=10,
                      min_frac=0.8, image_h=None, stride=8.0, sampling="bilinear", match=True):
    """Score all candidate pairs of every limb and match them greedily.

    Returns (C, 4) float64 rows [limb, global peak id of A, of B, score], limbs in
    ``order``, each limb's rows in greedy (score-descending) order. ``match=False``:
    every candidate, score-descending (ties: A, then B) within each limb.
    """
    pafs = np.asarray(pafs, dtype=np.float32)
    _, h, w = pafs.shape
    if image_h is None:
        image_h = h * stride
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    sample = _sample_nearest if sampling == "nearest" else _sample_bilinear
    f = np.arange(n_samples, dtype=np.float64) / (n_samples - 1.0)
    rows = []
    for l in order:
        ka, kb = limb_index[l]
        na, nb = counts[ka], counts[kb]
        if na == 0 or nb == 0:
            continue
        A = peaks[offsets[ka]:offsets[ka] + na].astype(np.float64)
        B = peaks[offsets[kb]:offsets[kb] + nb].astype(np.float64)
        ax, ay = A[:, 0][:, None], A[:, 1][:, None]
        dx = B[:, 0][None, :] - ax
        dy = B[:, 1][None, :] - ay
        norm = np.sqrt(dx * dx + dy * dy)
        valid = norm > 1e-9
        safe = np.where(valid, norm, 1.0)
        ux, uy = dx / safe, dy / safe
        px = ax[..., None] + dx[..., None] * f
        py = ay[..., None] + dy[..., None] * f
        v = (sample(pafs[2 * l], px, py) * ux[..., None]
             + sample(pafs[2 * l + 1], px, py) * uy[..., None])
        s = v[..., 0]
        for t in range(1, n_samples):
            s = s + v[..., t]
        cnt = (v > thre2).sum(axis=-1)
        score = s / n_samples + np.minimum(0.5 * image_h / (safe * stride) - 1.0, 0.0)
        ok = valid & (cnt > min_frac * n_samples) & (score > 0)
        ii, jj = np.nonzero(ok)
        sc = score[ii, jj]
        used_a, used_b, taken = set(), set(), 0
        for q in np.lexsort((jj, ii, -sc)):
            i, j = ii[q], jj[q]
            if not match:
                rows.append((l, offsets[ka] + i, offsets[kb] + j, sc[q]))
                continue
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            rows.append((l, offsets[ka] + i, offsets[kb] + j, sc[q]))
            taken += 1
            if taken == min(na, nb):
                break
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def assemble_ref(connections, peaks, limb_index, num_keypoints, no_start, min_parts=4,
                 min_score=0.4):
    """Group connections into people (CMU's rule, see mxpose.decode.assemble).

    Returns (N, K) int32 global peak ids (-1 unlabelled), (N,) float64 total scores,
    (N,) int32 part counts.
    """
    no_start = set(int(i) for i in no_start)
    people = []  # [parts list, total, count]
    for l, a, b, sc in connections:
        l, a, b = int(l), int(a), int(b)
        ka, kb = limb_index[l]
        hits = [p for p in people if p[0][ka] == a or p[0][kb] == b]
        if len(hits) == 1:
            p = hits[0]
            if p[0][kb] == -1 and p[0][ka] == a:
                p[0][kb] = b
                p[1] += float(peaks[b, 2]) + sc
                p[2] += 1
            elif p[0][ka] == -1 and p[0][kb] == b:
                p[0][ka] = a
                p[1] += float(peaks[a, 2]) + sc
                p[2] += 1
        elif len(hits) == 2:
            p, q = hits
            if all(x == -1 or y == -1 for x, y in zip(p[0], q[0])):
                p[0] = [x if x != -1 else y for x, y in zip(p[0], q[0])]
                p[1] += q[1] + sc
                p[2] += q[2]
                people.remove(q)
        elif not hits and l not in no_start:
            parts = [-1] * num_keypoints
            parts[ka], parts[kb] = a, b
            people.append([parts, float(peaks[a, 2]) + float(peaks[b, 2]) + sc, 2])
    keep = [p for p in people if p[2] >= min_parts and p[1] / p[2] >= min_score]
    return (np.array([p[0] for p in keep], dtype=np.int32).reshape(-1, num_keypoints),
            np.array([p[1] for p in keep], dtype=np.float64),
            np.array([p[2] for p in keep], dtype=np.int32))


def match_limbs_ref(candidates):
    """Per limb block, the one-to-one matching with the largest total score (SciPy's
    ``linear_sum_assignment``, an implementation independent of the kernel's), rows by
    descending score (ties: a, then b)."""
    from scipy.optimize import linear_sum_assignment
    cands = np.asarray(candidates, dtype=np.float64).reshape(-1, 4)
    rows = []
    start = 0
    while start < len(cands):
        end = start
        while end < len(cands) and cands[end, 0] == cands[start, 0]:
            end += 1
        blk = cands[start:end]
        ua, ia = np.unique(blk[:, 1], return_inverse=True)
        ub, ib = np.unique(blk[:, 2], return_inverse=True)
        w = np.zeros((len(ua), len(ub)))
        w[ia, ib] = blk[:, 3]
        cand = np.zeros(w.shape, dtype=bool)
        cand[ia, ib] = True
        ri, ci = linear_sum_assignment(w, maximize=True)
        got = [(blk[0, 0], ua[i], ub[j], w[i, j]) for i, j in zip(ri, ci) if cand[i, j]]
        got.sort(key=lambda t: (-t[3], t[1], t[2]))
        rows += got
        start = end
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def assemble_crowd_ref(candidates, peaks, limb_index, num_keypoints, no_start, min_parts=4,
                       min_score=0.4, init=None, share=True):
    """Crowd assembly: every limb candidate, best first, over all limb types.

    Written as the union of growing groups of peaks. A candidate (a, b) of limb (ka, kb)
    joins a group holding a (or a alone) with a group holding b (or b alone) when the
    union still holds at most one peak per keypoint (the same peak in the same slot is
    fine); owners are tried in the order they took the peak; two lone peaks joined by a
    no-start limb stay apart. Failing that, with ``share``, the first group on a's side,
    then on b's side, that lacks the other endpoint's keypoint takes that peak too when
    it already has exactly one owner (two people's keypoints at one spot give one peak).
    Candidates are taken by descending score, ties in row order. A group's total is its
    peaks' values plus the scores of the candidates that joined or extended it; groups
    are output in creation order (a union keeps the older), filtered as
    :func:`assemble_ref`. ``init`` = (parts, totals) seeds the groups.
    """
    no_start = set(int(i) for i in no_start)
    cands = np.asarray(candidates, dtype=np.float64).reshape(-1, 4)
    owners = {}         # peak -> [group ids], at most 2
    members = {}        # group id -> {keypoint: peak}
    total = {}
    groups = []         # live group ids, in creation order
    ids = itertools.count()
    if init is not None:
        for parts0, total0 in zip(*init):
            g = next(ids)
            groups.append(g)
            members[g] = {k: int(pk) for k, pk in enumerate(parts0) if pk >= 0}
            total[g] = float(total0)
            for pk in members[g].values():
                owners.setdefault(pk, []).append(g)

    def value(pk):
        return float(peaks[pk, 2])

    for r in np.argsort(-cands[:, 3], kind="stable"):
        l, a, b, sc = int(cands[r, 0]), int(cands[r, 1]), int(cands[r, 2]), cands[r, 3]
        ka, kb = int(limb_index[l][0]), int(limb_index[l][1])
        oa, ob = owners.get(a, []), owners.get(b, [])
        if set(oa) & set(ob):
            continue
        joined = False
        for ga in (oa or [None]):
            for gb in (ob or [None]):
                ma = members[ga] if ga is not None else {ka: a}
                mb = members[gb] if gb is not None else {kb: b}
                if any(ma[k] != mb[k] for k in set(ma) & set(mb)):
                    continue
                if ga is None and gb is None:
                    if l in no_start:
                        continue
                    g = next(ids)
                    groups.append(g)
                    members[g] = {ka: a, kb: b}
                    total[g] = value(a) + value(b) + sc
                    owners[a], owners[b] = [g], [g]
                elif gb is None:
                    members[ga][kb] = b
                    total[ga] = total[ga] + value(b) + sc
                    owners[b] = [ga]
                elif ga is None:
                    members[gb][ka] = a
                    total[gb] = value(a) + total[gb] + sc
                    owners[a] = [gb]
                else:
                    keep, drop = (ga, gb) if ga < gb else (gb, ga)
                    t = total[ga] + total[gb] + sc
                    for k, pk in members[drop].items():
                        own = owners[pk]
                        if keep in own:
                            own.remove(drop)
                        else:
                            own[own.index(drop)] = keep
                        members[keep][k] = pk
                    total[keep] = t
                    del members[drop], total[drop]
                    groups.remove(drop)
                joined = True
                break
            if joined:
                break
        if joined or not share:
            continue
        for g, x, kx in [(g, b, kb) for g in oa] + [(g, a, ka) for g in ob]:
            if kx not in members[g] and len(owners.get(x, [])) == 1:
                members[g][kx] = x
                total[g] = total[g] + value(x) + sc
                owners[x].append(g)
                break
    keep = [g for g in groups if len(members[g]) >= min_parts
            and total[g] / len(members[g]) >= min_score]
    parts = np.full((len(keep), num_keypoints), -1, dtype=np.int32)
    for n, g in enumerate(keep):
        for k, pk in members[g].items():
            parts[n, k] = pk
    return (parts, np.array([total[g] for g in keep], dtype=np.float64),
            np.array([len(members[g]) for g in keep], dtype=np.int32))


def cap_peaks_ref(peaks, counts, max_peaks):
    """At most ``max_peaks`` peaks per keypoint: the highest values, ties by position in
    the list (raster order), kept in list order."""
    if max_peaks <= 0:
        return peaks, counts
    keep, new_counts, start = [], [], 0
    for n in counts:
        idx = list(range(start, start + n))
        best = sorted(idx, key=lambda i: (-peaks[i, 2], i))[:max_peaks]
        keep += sorted(best)
        new_counts.append(len(best))
        start += n
    return peaks[keep].reshape(-1, 3), np.array(new_counts, dtype=np.int32)


def decode_ref(heatmaps, pafs, skeleton, stride=8.0, thre1=0.1, thre2=0.05, sigma=3.0,
               refine="log", sampling="bilinear", n_samples=10, min_frac=0.8, min_parts=4,
               min_score=0.4, image_height=None, assembly="crowd", max_peaks=64):
    """Twin of ``mxpose.decode.decode`` for maps already at the working resolution.

    Returns people (N, K, 3) float32 in input pixels (x, y, peak value) and scores (N,)
    float32 (total score / number of parts).
    """
    K = skeleton.num_keypoints
    peaks, counts = cap_peaks_ref(*find_peaks_ref(heatmaps, K, thre1, sigma / stride, refine),
                                  max_peaks)
    order = limb_order(skeleton)
    li, ns = skeleton.limb_index, skeleton.no_start_limb_index
    crowd = assembly == "crowd"
    conns = connect_limbs_ref(peaks, counts, pafs, li, order, thre2, n_samples, min_frac,
                              image_height, stride, sampling, match=not crowd)
    if crowd:
        init = assemble_ref(match_limbs_ref(conns), peaks, li, K, ns, 0, -np.inf)
        parts, total, count = assemble_crowd_ref(conns, peaks, li, K, ns, min_parts,
                                                 min_score, init=init[:2])
    else:
        parts, total, count = assemble_ref(conns, peaks, li, K, ns, min_parts, min_score)
    off = (stride - 1) / 2.0
    people = np.zeros((len(parts), K, 3), dtype=np.float32)
    lab = parts >= 0
    sel = peaks[parts[lab]]
    people[lab, 0] = sel[:, 0] * stride + off
    people[lab, 1] = sel[:, 1] * stride + off
    people[lab, 2] = sel[:, 2]
    return people, (total / np.maximum(count, 1)).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Synthetic people (tests and tools/bench/bench_decode.py)
# ---------------------------------------------------------------------------------------
# A standing person facing the camera, ~180 px tall, centred on the mid-hip line, by
# keypoint name (covers the COCO-18, MPI-15 and BODY_25 layouts).
_TEMPLATE = {
    "nose": (0, -70), "neck": (0, -50), "head_top": (0, -88), "upper_neck": (0, -55),
    "chest": (0, -20), "r_eye": (-5, -75), "l_eye": (5, -75), "r_ear": (-10, -72),
    "l_ear": (10, -72), "r_shoulder": (-20, -50), "l_shoulder": (20, -50),
    "r_elbow": (-28, -20), "l_elbow": (28, -20), "r_wrist": (-32, 10), "l_wrist": (32, 10),
    "r_hip": (-12, 10), "l_hip": (12, 10), "r_knee": (-14, 50), "l_knee": (14, 50),
    "r_ankle": (-15, 90), "l_ankle": (15, 90),
    # BODY_25's mid-hip and the feet (toes pointing outwards, heels behind the ankles)
    "mid_hip": (0, 10), "r_heel": (-10, 106), "l_heel": (10, 106),
    "r_big_toe": (-22, 112), "l_big_toe": (22, 112),
    "r_small_toe": (-40, 106), "l_small_toe": (40, 106),
}


def synthetic_people(skeleton, n, width=640, height=480, rng=None, jitter=3.0,
                     scale=(0.5, 1.0), max_rotate=15.0, drop_leaves=0.0):
    """``n`` non-overlapping people (N, K, 3) in a ``width`` x ``height`` image.

    People sit in the cells of a near-square grid of slots, each with a random scale,
    rotation and per-keypoint jitter; with ``drop_leaves`` > 0 keypoints that end the
    skeleton's chains (wrists, ankles, ears...) are unlabelled with that probability, so
    every labelled keypoint stays connected to its person.
    """
    rng = np.random.default_rng(rng)
    tmpl = np.array([_TEMPLATE[k] for k in skeleton.keypoints], dtype=np.float64)
    deg = np.bincount(np.asarray(skeleton.limb_index).ravel(), minlength=skeleton.num_keypoints)
    leaves = np.nonzero(deg == 1)[0]
    cols = int(math.ceil(math.sqrt(n * width / height)))
    rows = int(math.ceil(n / cols))
    sw, sh = width / cols, height / rows
    fit = min(sw / 90.0, sh / 200.0)
    out = np.zeros((n, skeleton.num_keypoints, 3), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        s = rng.uniform(*scale) * min(fit, 1.5)
        a = math.radians(rng.uniform(-max_rotate, max_rotate))
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        pts = (tmpl @ rot.T) * s + rng.normal(0.0, jitter * s, tmpl.shape)
        cx, cy = (c + 0.5) * sw, (r + 0.5) * sh
        out[i, :, :2] = pts + (cx, cy)
        out[i, :, 2] = 2
        if drop_leaves > 0:
            drop = leaves[rng.random(len(leaves)) < drop_leaves]
            out[i, drop] = 0
    return out
