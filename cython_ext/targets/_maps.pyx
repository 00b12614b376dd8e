# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Ground-truth map kernels: Gaussian heatmaps, Part Affinity Fields, loss-mask pooling.

Private module: call it through :mod:`mxpose.targets.maps`, which validates shapes,
dtypes and policy. Every kernel writes in place into float32 arrays the caller owns and
only touches the cells inside each Gaussian's window or each limb's box, after a
``memset`` of each output channel right before it is drawn (so the drawing finds the
channel in L1 cache; one memset of all channels up front measured 6-7 % slower) and a
fill of the background channel with 1.
Heatmap rows of Gaussians at most 8 cells wide are drawn 8 cells at a time with SSE2
(``_maps_simd.h``; same operations in the same precision, bit-identical to the scalar
loops, which run elsewhere and where SSE2 is missing).
Arithmetic is in double; outputs are float32. Shapes are checked here too (cheaply),
because with bounds checks off a wrong shape would write outside the arrays.

The plain-NumPy twins of these kernels live in ``tests/reference.py``.
"""
from libc.math cimport exp, sqrt, round, fabs, fmax, INFINITY
from libc.stdlib cimport malloc, free
from libc.string cimport memset

cdef extern from "math.h" nogil:
    bint isfinite(double x)

# SSE2 rows of 8 heatmap cells, bit-identical to the scalar loops below (MXP_SIMD8 is 0
# where SSE2 is missing; then only the scalar loops run).
cdef extern from "_maps_simd.h" nogil:
    const int MXP_SIMD8
    void mxp_row8_max(float *row, float *bg, const double *gx, const double *ex, double gy,
                      double ey, double cut)
    void mxp_row8_sum(float *row, float *bg, const double *gx, const double *ex, double gy,
                      double ey, double cut)

# CMU's cut: a Gaussian is not drawn where its exponent exceeds ln(100) (value < 1 %).
# The constant is CMU's rounded 4.6052, not log(100) = 4.60517..., so cmu mode matches.
CUT = 4.6052
cdef double _CUT = 4.6052
# Limbs shorter than this (in grid cells) count as zero-length and write nothing.
MIN_LIMB = 1e-6
cdef double _MIN_LIMB = 1e-6


# ceil/floor with the clamping folded in. Without SSE4.1 the compiler turns libm's
# ceil/floor into calls, which cost more than the few cells of a window; here a value is
# clamped first (NaN included) and then truncated, which is exact in the clamped range.
cdef inline Py_ssize_t _clamp_lo(double v) noexcept nogil:
    """ceil(v) clamped to [0, 1e9] (the first cell index >= v)."""
    cdef Py_ssize_t i
    if not v > 0:
        return 0
    if v > 1e9:
        return <Py_ssize_t>1000000000
    i = <Py_ssize_t>v
    return i + (<double>i < v)


cdef inline Py_ssize_t _clamp_hi(double v, Py_ssize_t n) noexcept nogil:
    """floor(v) clamped to [-1, n - 1] (the last cell index <= v; -1: empty range)."""
    if not v >= 0:
        return -1
    if v >= n - 1:
        return n - 1
    return <Py_ssize_t>v


cdef inline void _gauss_axis(double *e, double *g, Py_ssize_t lo, Py_ssize_t hi,
                             Py_ssize_t base, double p, double stride, double off,
                             double inv2s2, double step) noexcept nogil:
    """One axis of a separable Gaussian at ``p``: for cells lo..hi, the exponent
    ``e[i - base] = d^2 / (2 sigma^2)`` and the factor ``g[i - base] = exp(-e)`` with
    ``d = stride * i + off - p``, by the recurrence g[i+1] = g[i] * q[i], q[i+1] = q[i] *
    step (two exps per axis)."""
    cdef Py_ssize_t i
    cdef double d = stride * lo + off - p
    cdef double f = exp(-d * d * inv2s2)
    cdef double q = exp(-(2.0 * d * stride + stride * stride) * inv2s2)
    for i in range(lo, hi + 1):
        d = stride * i + off - p
        e[i - base] = d * d * inv2s2
        g[i - base] = f
        f = f * q
        q = q * step


def render_heatmaps(const float[:, :, ::1] kpts, float[:, :, ::1] out, double stride,
                    double sigma, double shift, bint sum_clip, bint background):
    """Render Gaussian heatmaps of people ``kpts`` (N, K, 3) into ``out`` (C, H, W).

    Channels 0..K-1 are zeroed and drawn; with ``background`` channel K holds
    ``1 - max_k heatmap_k`` (every cell written). Cell g is centred at input pixel
    ``stride * g + (stride - 1) / 2``; keypoint coordinates are used as ``x + shift``.
    Only entries with v > 0 are drawn; people merge by max or by sum clipped at 1.

    Returns the number of labelled keypoints skipped for non-finite coordinates.
    """
    cdef Py_ssize_t N = kpts.shape[0], K = kpts.shape[1]
    cdef Py_ssize_t H = out.shape[1], W = out.shape[2]
    cdef Py_ssize_t n, k, i, j, x0, x1, y0, y1, bad = 0
    cdef float t1, gf
    cdef double cut = _CUT   # a local: the compiler need not reload a global per store
    cdef double off = 0.5 * (stride - 1.0)
    cdef double inv2s2 = 1.0 / (2.0 * sigma * sigma)
    cdef double radius = sqrt(_CUT / inv2s2)
    cdef double step = exp(-2.0 * stride * stride * inv2s2)
    cdef double x, y, d, g, t, eyj, gyj
    cdef double e8[8]
    cdef double g8[8]
    cdef Py_ssize_t xs
    cdef float *row
    cdef float *bg = NULL
    cdef float *brow
    if out.shape[0] != K + (1 if background else 0):
        raise ValueError(f"heatmap output has {out.shape[0]} channels for {K} keypoints"
                         + (" + background" if background else ""))
    if kpts.shape[2] != 3:
        raise ValueError("keypoints must be (N, K, 3)")
    if not (stride > 0 and sigma > 0):
        raise ValueError("stride and sigma must be positive")
    if W == 0 or H == 0:
        return 0
    cdef double *ex = <double *>malloc(W * sizeof(double))
    cdef double *gx = <double *>malloc(W * sizeof(double))
    cdef double *ey = <double *>malloc(H * sizeof(double))
    cdef double *gy = <double *>malloc(H * sizeof(double))
    # Where no background is wanted its updates go to this throw-away row.
    cdef float *scratch = <float *>malloc(W * sizeof(float))
    if ex == NULL or gx == NULL or ey == NULL or gy == NULL or scratch == NULL:
        free(ex); free(gx); free(ey); free(gy); free(scratch)
        raise MemoryError()
    with nogil:
        if background:
            bg = &out[K, 0, 0]
            for i in range(H * W):
                bg[i] = 1.0
        for i in range(W):
            scratch[i] = 1.0
        for k in range(K):
            memset(&out[k, 0, 0], 0, H * W * sizeof(float))
            for n in range(N):
                if not kpts[n, k, 2] > 0:
                    continue
                x = kpts[n, k, 0] + shift
                y = kpts[n, k, 1] + shift
                if not (isfinite(x) and isfinite(y)):
                    bad += 1
                    continue
                x0 = _clamp_lo((x - radius - off) / stride)
                x1 = _clamp_hi((x + radius - off) / stride, W)
                y0 = _clamp_lo((y - radius - off) / stride)
                y1 = _clamp_hi((y + radius - off) / stride, H)
                if x0 > x1 or y0 > y1:
                    continue
                # The 2-D Gaussian is separable: per-axis factors instead of one exp per
                # cell, and along an axis g[i+1] = g[i] * q[i] with q[i+1] = q[i] * step,
                # so each axis costs two exps. The cut uses the exact exponents.
                if MXP_SIMD8 and W >= 8 and x1 - x0 < 8:
                    # Rows of 8 cells in SSE2 (1.08-1.13x for the whole sample): the
                    # row starts at x0, or at W - 8 at the right edge; the cells of the
                    # 8 outside x0..x1 get an infinite exponent and are left as they are.
                    xs = x0 if x0 + 8 <= W else W - 8
                    for i in range(8):
                        e8[i] = INFINITY
                        g8[i] = 0.0
                    _gauss_axis(e8, g8, x0, x1, xs, x, stride, off, inv2s2, step)
                    _gauss_axis(ey, gy, y0, y1, 0, y, stride, off, inv2s2, step)
                    for j in range(y0, y1 + 1):
                        if ey[j] > cut:
                            continue
                        row = &out[k, j, xs]
                        brow = &bg[j * W + xs] if background else scratch
                        if sum_clip:
                            mxp_row8_sum(row, brow, g8, e8, gy[j], ey[j], cut)
                        else:
                            mxp_row8_max(row, brow, g8, e8, gy[j], ey[j], cut)
                    continue
                _gauss_axis(ex, gx, x0, x1, 0, x, stride, off, inv2s2, step)
                _gauss_axis(ey, gy, y0, y1, 0, y, stride, off, inv2s2, step)
                # Branch-free inner loops: cells past the cut add 0 / do not raise the
                # max (a data-dependent branch here mispredicts about half the time).
                # A cell's heatmap value only grows (max, or a clipped sum of positive
                # terms), so background = min over channels of (1 - heatmap) can be
                # updated right here from each new value.
                for j in range(y0, y1 + 1):
                    eyj = ey[j]
                    if eyj > cut:
                        continue
                    gyj = gy[j]
                    row = &out[k, j, 0]
                    brow = &bg[j * W] if background else scratch
                    if sum_clip:
                        for i in range(x0, x1 + 1):
                            g = gx[i] * gyj if ex[i] + eyj <= cut else 0.0
                            t = row[i] + g
                            gf = <float>(t if t < 1.0 else 1.0)
                            row[i] = gf
                            t1 = 1.0 - gf
                            brow[i] = t1 if t1 < brow[i] else brow[i]
                    else:
                        for i in range(x0, x1 + 1):
                            gf = <float>(gx[i] * gyj) if ex[i] + eyj <= cut else 0.0
                            gf = gf if gf > row[i] else row[i]
                            row[i] = gf
                            t1 = 1.0 - gf
                            brow[i] = t1 if t1 < brow[i] else brow[i]
    free(ex); free(gx); free(ey); free(gy); free(scratch)
    return bad


def render_pafs(const float[:, :, ::1] kpts, const int[:, ::1] limbs, float[:, :, ::1] out,
                int[:, ::1] count, double stride, double width, double shift, bint cmu):
    """Render Part Affinity Fields of people ``kpts`` (N, K, 3) into ``out`` (2L, H, W).

    ``count`` (H, W) int32 is scratch (its contents are ignored and overwritten). For each
    limb l = (a, b) = ``limbs[l]`` and each person with both endpoints labelled (v > 0)
    and a length of at least ``MIN_LIMB`` cells, the unit vector from a to b is written
    into channels (2l, 2l+1) on the cells whose perpendicular distance to the limb's line
    is <= ``width`` grid cells and which lie in the limb's bounding box grown by
    ``width``; people covering the same cell are averaged (true running mean).

    Grid coordinates of an input point p: centred mode ``(p + shift - (stride-1)/2) /
    stride`` with box ``ceil(min - width) .. floor(max + width)`` inclusive; cmu mode
    ``(p + shift) / stride`` with CMU's box ``round(min - width) .. round(max + width)``
    with the upper end excluded (round half away from zero).

    Returns the number of labelled limbs skipped for non-finite coordinates.
    """
    cdef Py_ssize_t N = kpts.shape[0], K = kpts.shape[1], L = limbs.shape[0]
    cdef Py_ssize_t H = out.shape[1], W = out.shape[2]
    cdef Py_ssize_t n, l, ia, ib, gxi, gyi, x0, x1, y0, y1, lo, hi, bad = 0
    cdef double off = 0.0 if cmu else 0.5 * (stride - 1.0)
    cdef double inv = 1.0 / stride
    cdef double ax, ay, bx, by, dx, dy, norm, vx, vy, ivy, ox, oy, xa, xb, bax, bay, c, r
    cdef float *px
    cdef float *py
    cdef int *cnt
    cdef int cc, tag
    if out.shape[0] != 2 * L:
        raise ValueError(f"PAF output has {out.shape[0]} channels for {L} limbs")
    if count.shape[0] != H or count.shape[1] != W:
        raise ValueError("count scratch must have the map's shape")
    if kpts.shape[2] != 3:
        raise ValueError("keypoints must be (N, K, 3)")
    if limbs.shape[1] != 2:
        raise ValueError("limbs must be (L, 2)")
    for l in range(L):
        if not (0 <= limbs[l, 0] < K and 0 <= limbs[l, 1] < K):
            raise ValueError(f"limb {l} refers to a keypoint outside 0..{K - 1}")
    if not (stride > 0 and width > 0):
        raise ValueError("stride and width must be positive")
    if H == 0 or W == 0:
        return 0
    if N >= 65535 or L >= 32767:
        raise ValueError("render_pafs supports at most 65534 people and 32766 limbs")
    with nogil:
        # Per-cell counts of the limb being drawn are stored as tag + count with a tag
        # that grows with the limb, so a value left by an earlier limb reads as 0 and the
        # scratch needs clearing once per call, not once per limb.
        memset(&count[0, 0], 0, H * W * sizeof(int))
        for l in range(L):
            ia = limbs[l, 0]
            ib = limbs[l, 1]
            px = &out[2 * l, 0, 0]
            py = &out[2 * l + 1, 0, 0]
            memset(px, 0, 2 * H * W * sizeof(float))
            tag = <int>((l + 1) << 16)
            for n in range(N):
                if not (kpts[n, ia, 2] > 0 and kpts[n, ib, 2] > 0):
                    continue
                ax = (kpts[n, ia, 0] + shift - off) * inv
                ay = (kpts[n, ia, 1] + shift - off) * inv
                bx = (kpts[n, ib, 0] + shift - off) * inv
                by = (kpts[n, ib, 1] + shift - off) * inv
                if not (isfinite(ax) and isfinite(ay) and isfinite(bx) and isfinite(by)):
                    bad += 1
                    continue
                dx = bx - ax
                dy = by - ay
                norm = sqrt(dx * dx + dy * dy)
                if not norm >= _MIN_LIMB:
                    continue
                vx = dx / norm
                vy = dy / norm
                # Distances are measured from the endpoint nearer the grid origin: the same
                # line, but a far-off endpoint (1e30) would cancel catastrophically.
                if fmax(fabs(bx), fabs(by)) < fmax(fabs(ax), fabs(ay)):
                    ox = bx
                    oy = by
                else:
                    ox = ax
                    oy = ay
                if cmu:
                    # caffe_train: max(int(round(min - thre)), 0) .. min(int(round(max +
                    # thre)), grid) with the upper bound excluded.
                    x0 = _clamp_lo(round((ax if ax < bx else bx) - width))
                    x1 = _clamp_hi(round((ax if ax > bx else bx) + width) - 1.0, W)
                    y0 = _clamp_lo(round((ay if ay < by else by) - width))
                    y1 = _clamp_hi(round((ay if ay > by else by) + width) - 1.0, H)
                else:
                    x0 = _clamp_lo((ax if ax < bx else bx) - width)
                    x1 = _clamp_hi((ax if ax > bx else bx) + width, W)
                    y0 = _clamp_lo((ay if ay < by else by) - width)
                    y1 = _clamp_hi((ay if ay > by else by) + width, H)
                if x0 > x1 or y0 > y1:
                    continue
                ivy = 1.0 / vy if (vy > 1e-9 or vy < -1e-9) else 0.0
                for gyi in range(y0, y1 + 1):
                    bay = gyi - oy
                    cnt = &count[gyi, 0]
                    # On this row the distance |(x - ox) vy - bay vx| is within width on one
                    # interval of x; visit that interval (plus a cell of slack each side,
                    # the exact test below decides) instead of the whole box row.
                    lo = x0
                    hi = x1
                    if ivy != 0.0:
                        xa = ox + (bay * vx - width) * ivy
                        xb = ox + (bay * vx + width) * ivy
                        if xa > xb:
                            xa, xb = xb, xa
                        if xa - 1.0 > lo:
                            lo = _clamp_lo(xa - 1.0)
                        if xb + 1.0 < hi:
                            hi = _clamp_hi(xb + 1.0, W)
                    for gxi in range(lo, hi + 1):
                        bax = gxi - ox
                        if fabs(bax * vy - bay * vx) > width:
                            continue
                        cc = cnt[gxi] - tag
                        if cc <= 0:     # first person on this cell for this limb
                            cnt[gxi] = tag + 1
                            px[gyi * W + gxi] = <float>vx
                            py[gyi * W + gxi] = <float>vy
                        else:
                            c = cc
                            r = 1.0 / (c + 1.0)
                            px[gyi * W + gxi] = <float>((px[gyi * W + gxi] * c + vx) * r)
                            py[gyi * W + gxi] = <float>((py[gyi * W + gxi] * c + vy) * r)
                            cnt[gxi] = tag + cc + 1
    return bad


def pool_mask(const float[:, ::1] src, float[:, ::1] out, Py_ssize_t stride):
    """Area-average ``src`` (h, w) into ``out`` (H, W): cell (g, f) is the mean of
    ``src[stride*g : stride*(g+1), stride*f : stride*(f+1)]``. Needs h >= stride*H and
    w >= stride*W (extra rows/columns at the bottom/right are not covered by any cell).
    """
    cdef Py_ssize_t H = out.shape[0], W = out.shape[1]
    cdef Py_ssize_t n = stride * W
    cdef Py_ssize_t g, f, r, t
    cdef float norm = <float>(1.0 / (stride * stride))
    cdef const float *s
    cdef float *o
    cdef float v
    if stride < 1 or src.shape[0] < stride * H or src.shape[1] < stride * W:
        raise ValueError(f"a ({src.shape[0]}, {src.shape[1]}) mask does not cover "
                         f"({H}, {W}) cells of stride {stride}")
    if H == 0 or W == 0:
        return None
    cdef float *acc = <float *>malloc(n * sizeof(float))
    if acc == NULL:
        raise MemoryError()
    with nogil:
        for g in range(H):
            # Sum the block's rows first (contiguous, vectorisable), then each run of
            # ``stride`` columns.
            s = &src[stride * g, 0]
            for t in range(n):
                acc[t] = s[t]
            for r in range(stride * g + 1, stride * (g + 1)):
                s = &src[r, 0]
                for t in range(n):
                    acc[t] = acc[t] + s[t]
            o = &out[g, 0]
            for f in range(W):
                v = 0
                for t in range(stride * f, stride * (f + 1)):
                    v = v + acc[t]
                o[f] = v * norm
    free(acc)
    return None
