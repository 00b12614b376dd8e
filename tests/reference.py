"""Plain-NumPy references of the compiled kernels (readable, not fast).

Each function here is the specification its Cython twin is tested against. They work on
the whole map at once (vectorised over cells, looping over people and channels) in
float64, and return float32.

Targets (``mxpose.targets._maps``)
----------------------------------
``heatmaps_ref``   Gaussian heatmaps + background.
``pafs_ref``       Part Affinity Fields, true mean over people.
``pool_mask_ref``  area-averaged loss mask.
``cmu_label_maps`` an independent transcription of CMU caffe_train's
                   putGaussianMaps / putVecMaps / background loops in float32, used to
                   check that ``mode='cmu'`` reproduces caffe_train.
"""
import numpy as np

# The Gaussian is cut where its exponent exceeds this (CMU's rounded ln(100)).
CUT = 4.6052
# Limbs shorter than this many grid cells write nothing.
MIN_LIMB = 1e-6


def _people(kpts):
    a = np.asarray(kpts, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    return a.astype(np.float64)


def _round_half_away(v):
    """C/C++ ``round``: halves go away from zero (NumPy's round goes to even)."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def heatmaps_ref(kpts, out_shape, stride=8, sigma=7.0, merge="max", mode="centered"):
    """(K+1, H, W) heatmaps of people ``kpts`` (N, K, 3), background last.

    Cell g is centred at input pixel ``stride*g + (stride-1)/2``. A labelled keypoint
    (v > 0) at (x, y) contributes ``exp(-e)`` with
    ``e = dx^2 / (2 sigma^2) + dy^2 / (2 sigma^2)`` where ``e <= CUT``, 0 elsewhere.
    People merge by max, or by sum clipped at 1 (``merge='sum_clip'``). In cmu mode the
    coordinates are shifted by -1 px first. Background = 1 - max over keypoints.
    """
    p = _people(kpts)
    H, W = out_shape
    K = p.shape[1]
    shift = -1.0 if mode == "cmu" else 0.0
    off = (stride - 1) / 2.0
    cx = stride * np.arange(W, dtype=np.float64) + off
    cy = stride * np.arange(H, dtype=np.float64) + off
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    hm = np.zeros((K + 1, H, W), dtype=np.float64)
    for k in range(K):
        for n in range(p.shape[0]):
            x, y, v = p[n, k]
            if not v > 0:
                continue
            x, y = x + shift, y + shift
            ex = (cx - x) ** 2 * inv2s2
            ey = (cy - y) ** 2 * inv2s2
            e = ey[:, None] + ex[None, :]
            g = np.where(e <= CUT, np.exp(-e), 0.0)
            if merge == "max":
                hm[k] = np.maximum(hm[k], g)
            else:
                hm[k] += g
        if merge != "max":
            hm[k] = np.minimum(hm[k], 1.0)
    hm[K] = np.clip(1.0 - hm[:K].max(axis=0, initial=0.0), 0.0, 1.0)
    return hm.astype(np.float32)


def pafs_ref(kpts, limb_index, out_shape, stride=8, width=1.0, mode="centered"):
    """(2L, H, W) Part Affinity Fields of people ``kpts`` (N, K, 3).

    For limb l = (a, b) and every person with both ends labelled and a length of at
    least ``MIN_LIMB`` cells, the unit vector a -> b goes on the cells whose distance
    to the limb's line is <= ``width`` and that lie in the limb's box grown by
    ``width``; a cell covered by several people holds the mean of their vectors.

    Grid coordinates: ``centered``: ``(p - (stride-1)/2) / stride``, box
    ``ceil(min - width) <= g <= floor(max + width)``. ``cmu``: ``(p - 1) / stride``
    (CMU's -1 px shift, cell g at input pixel ``stride*g``), box
    ``round(min - width) <= g < round(max + width)`` with C rounding.
    """
    p = _people(kpts)
    H, W = out_shape
    limbs = np.asarray(limb_index).reshape(-1, 2)
    cmu = mode == "cmu"
    shift = -1.0 if cmu else 0.0
    off = 0.0 if cmu else (stride - 1) / 2.0
    inv = 1.0 / stride
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    out = np.zeros((2 * len(limbs), H, W), dtype=np.float64)
    for l, (ia, ib) in enumerate(limbs):
        sx = np.zeros((H, W))
        sy = np.zeros((H, W))
        cnt = np.zeros((H, W))
        for n in range(p.shape[0]):
            if not (p[n, ia, 2] > 0 and p[n, ib, 2] > 0):
                continue
            ax, ay = (p[n, ia, :2] + shift - off) * inv
            bx, by = (p[n, ib, :2] + shift - off) * inv
            dx, dy = bx - ax, by - ay
            norm = np.sqrt(dx * dx + dy * dy)
            if not norm >= MIN_LIMB:
                continue
            vx, vy = dx / norm, dy / norm
            if cmu:
                box = ((gx >= _round_half_away(min(ax, bx) - width))
                       & (gx < _round_half_away(max(ax, bx) + width))
                       & (gy >= _round_half_away(min(ay, by) - width))
                       & (gy < _round_half_away(max(ay, by) + width)))
            else:
                box = ((gx >= np.ceil(min(ax, bx) - width)) & (gx <= np.floor(max(ax, bx) + width))
                       & (gy >= np.ceil(min(ay, by) - width)) & (gy <= np.floor(max(ay, by) + width)))
            # Measured from the endpoint nearer the grid origin (same line; a far-off
            # endpoint would lose all precision to cancellation).
            ox, oy = (bx, by) if max(abs(bx), abs(by)) < max(abs(ax), abs(ay)) else (ax, ay)
            dist = np.abs((gx - ox) * vy - (gy - oy) * vx)
            m = box & (dist <= width)
            sx[m] += vx
            sy[m] += vy
            cnt[m] += 1
        nz = cnt > 0
        out[2 * l][nz] = sx[nz] / cnt[nz]
        out[2 * l + 1][nz] = sy[nz] / cnt[nz]
    return out.astype(np.float32)


def pool_mask_ref(supervise, out_shape, stride=8):
    """(H, W) mean of each ``stride x stride`` block of ``supervise`` (h, w)."""
    H, W = out_shape
    s = np.asarray(supervise, dtype=np.float64)[:H * stride, :W * stride]
    return s.reshape(H, stride, W, stride).mean(axis=(1, 3)).astype(np.float32)


def cmu_label_maps(kpts, limb_index, grid, stride=8, sigma=7.0, thre=1, average=True):
    """caffe_train's ground truth, transcribed loop by loop in float32.

    ``kpts`` are CMU's coordinates (already shifted by -1 px, i.e. what caffe_train
    holds after ``ReadMetaData``); v > 0 means rendered. Returns ``(heatmaps (K+1, H, W),
    pafs (2L, H, W))``. ``average=False`` keeps caffe_train's counter that never
    increments (each person overwrites the cells it covers); ``average=True`` is the
    running mean that the counter was meant to compute.
    """
    p = np.asarray(kpts, dtype=np.float32).reshape(-1, np.shape(kpts)[-2], 3)
    grid_x, grid_y = grid
    K = p.shape[1]
    f = np.float32
    hm = np.zeros((K + 1, grid_y, grid_x), dtype=np.float32)
    start = f(stride / 2.0 - 0.5)
    for k in range(K):
        for n in range(p.shape[0]):
            if not p[n, k, 2] > 0:
                continue
            cx, cy = p[n, k, 0], p[n, k, 1]
            # The same float32 operations as caffe_train's per-cell loop, on all cells.
            x = (start + (np.arange(grid_x) * stride).astype(np.float32))[None, :]
            y = (start + (np.arange(grid_y) * stride).astype(np.float32))[:, None]
            d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy)          # float32
            exponent = d2.astype(np.float64) / 2.0 / float(sigma) / float(sigma)
            acc = hm[k].astype(np.float64) + np.exp(-exponent)
            upd = np.minimum(acc.astype(np.float32), np.float32(1))
            hm[k] = np.where(exponent > 4.6052, hm[k], upd)
    hm[K] = np.maximum(1.0 - hm[:K].max(axis=0, initial=0.0), 0.0)

    limbs = np.asarray(limb_index).reshape(-1, 2)
    paf = np.zeros((2 * len(limbs), grid_y, grid_x), dtype=np.float32)
    for l, (ia, ib) in enumerate(limbs):
        count = np.zeros((grid_y, grid_x), dtype=np.int64)
        for n in range(p.shape[0]):
            if not (p[n, ia, 2] > 0 and p[n, ib, 2] > 0):
                continue
            a = p[n, ia, :2] * f(0.125)
            b = p[n, ib, :2] * f(0.125)
            bc = (b - a).astype(np.float32)
            min_x = max(int(_round_half_away(f(min(a[0], b[0]) - thre))), 0)
            max_x = min(int(_round_half_away(f(max(a[0], b[0]) + thre))), grid_x)
            min_y = max(int(_round_half_away(f(min(a[1], b[1]) - thre))), 0)
            max_y = min(int(_round_half_away(f(max(a[1], b[1]) + thre))), grid_y)
            norm = f(np.sqrt(f(bc[0] * bc[0] + bc[1] * bc[1])))
            if norm == 0:
                continue   # caffe_train divides by zero here; its NaNs write nothing
            bc = (bc / norm).astype(np.float32)
            for g_y in range(min_y, max_y):
                for g_x in range(min_x, max_x):
                    bax = f(f(g_x) - a[0])
                    bay = f(f(g_y) - a[1])
                    dist = abs(f(f(bax * bc[1]) - f(bay * bc[0])))
                    if dist <= thre:
                        cnt = count[g_y, g_x]
                        if cnt == 0:
                            paf[2 * l, g_y, g_x] = bc[0]
                            paf[2 * l + 1, g_y, g_x] = bc[1]
                        else:
                            paf[2 * l, g_y, g_x] = (paf[2 * l, g_y, g_x] * cnt + bc[0]) / (cnt + 1)
                            paf[2 * l + 1, g_y, g_x] = (paf[2 * l + 1, g_y, g_x] * cnt + bc[1]) / (cnt + 1)
                        if average:   # caffe_train increments only in the branch above,
                            # which a count of 0 never reaches
                            count[g_y, g_x] = cnt + 1
    return hm, paf
