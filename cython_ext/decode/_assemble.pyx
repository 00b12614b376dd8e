# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernels of the PAF decoder: smoothing, peaks, limb candidates, assembly.

Private module: call it through :mod:`mxpose.decode`, which validates inputs, allocates
every array written here and owns all policy. Each kernel has a NumPy twin in
``tests/reference_decode.py`` with the same floating-point operation order, so that
peaks, connections and people can be compared exactly.
"""
from libc.math cimport floor, log, sqrt, fmin, fmax
from libc.stdlib cimport malloc, free, qsort

# Keep a * b + c as two roundings (no fused multiply-add even under -march=native), so
# the kernels stay bit-identical to their NumPy twin, which never fuses.
cdef extern from *:
    """
    #if defined(__clang__)
    #pragma STDC FP_CONTRACT OFF
    #elif defined(__GNUC__)
    #pragma GCC optimize ("fp-contract=off")
    #endif
    """

cdef double TINY = 1e-10


# ---------------------------------------------------------------------------------------
# Smoothing
# ---------------------------------------------------------------------------------------
def smooth(const float[:, :, ::1] src, float[:, :, ::1] dst, const float[::1] kernel,
           float[:, ::1] tmp):
    """Separable convolution of every channel with ``kernel`` (odd length), edges
    replicated; float32 accumulation tap by tap (the reference does the same). ``tmp``
    is (H, W) work space."""
    cdef Py_ssize_t C = src.shape[0], H = src.shape[1], W = src.shape[2]
    cdef Py_ssize_t n = kernel.shape[0], r = n // 2
    cdef Py_ssize_t c, y, x, t, q
    cdef float kt
    cdef float* row = <float*>malloc((W + 2 * r) * sizeof(float))
    cdef float* acc = <float*>malloc(W * sizeof(float))
    if row == NULL or acc == NULL:
        free(row)
        free(acc)
        raise MemoryError("smooth: cannot allocate row buffers")
    # Loops run tap-outer, pixel-inner: each pixel still sums its taps in order (so the
    # result is bit-identical to the reference), and the inner loop vectorises.
    with nogil:
        for c in range(C):
            for y in range(H):
                for x in range(r):
                    row[x] = src[c, y, 0]
                    row[W + r + x] = src[c, y, W - 1]
                for x in range(W):
                    row[r + x] = src[c, y, x]
                    acc[x] = 0.0
                for t in range(n):
                    kt = kernel[t]
                    for x in range(W):
                        acc[x] = acc[x] + kt * row[x + t]
                for x in range(W):
                    tmp[y, x] = acc[x]
            for y in range(H):
                for x in range(W):
                    acc[x] = 0.0
                for t in range(n):
                    kt = kernel[t]
                    q = y + t - r
                    if q < 0:
                        q = 0
                    elif q >= H:
                        q = H - 1
                    for x in range(W):
                        acc[x] = acc[x] + kt * tmp[q, x]
                for x in range(W):
                    dst[c, y, x] = acc[x]
    free(row)
    free(acc)


# ---------------------------------------------------------------------------------------
# Peaks
# ---------------------------------------------------------------------------------------
cdef inline double _fit(double l, double c, double r, int mode) noexcept nogil:
    # Vertex of the parabola through (-1, l), (0, c), (1, r); on log values (mode 2) it
    # is exact for a sampled Gaussian, which is what the maps are trained to be.
    cdef double den, off
    if mode == 2:
        if c <= 0.0:
            return 0.0
        l = log(fmax(l, TINY))
        c = log(c)
        r = log(fmax(r, TINY))
    den = l - 2.0 * c + r
    if den >= 0.0:
        return 0.0
    off = 0.5 * (l - r) / den
    return fmin(fmax(off, -0.5), 0.5)


cdef inline double _tr(double v, int mode) noexcept nogil:
    if mode == 2:
        return log(fmax(v, TINY))
    return v


cdef inline double _fit_edge(double c, double n, double s, double kappa, int mode) noexcept nogil:
    # A peak on the map's edge has one neighbour on that axis; borrow the curvature
    # ``kappa`` of the other axis (peaks are isotropic Gaussians) to place the vertex.
    # The vertex may lie outside the map, up to one cell beyond the edge cell's centre.
    cdef double beta, off
    if not (kappa < 0.0) or (mode == 2 and c <= 0.0):
        return 0.0
    beta = s * (_tr(n, mode) - _tr(c, mode) - 0.5 * kappa)
    off = -beta / kappa
    return fmin(fmax(off, -1.0), 1.0)


cdef inline void _refine(const float[:, :, ::1] sm, Py_ssize_t k, Py_ssize_t y, Py_ssize_t x,
                         int mode, double* ox, double* oy) noexcept nogil:
    cdef Py_ssize_t H = sm.shape[1], W = sm.shape[2]
    cdef double c = sm[k, y, x], kx = 0.0, ky = 0.0
    cdef bint hx = 0 < x < W - 1, hy = 0 < y < H - 1
    ox[0] = 0.0
    oy[0] = 0.0
    if not mode:
        return
    if hx:
        ox[0] = _fit(sm[k, y, x - 1], c, sm[k, y, x + 1], mode)
        kx = _tr(sm[k, y, x - 1], mode) - 2.0 * _tr(c, mode) + _tr(sm[k, y, x + 1], mode)
    if hy:
        oy[0] = _fit(sm[k, y - 1, x], c, sm[k, y + 1, x], mode)
        ky = _tr(sm[k, y - 1, x], mode) - 2.0 * _tr(c, mode) + _tr(sm[k, y + 1, x], mode)
    if not hx and W > 1 and hy:
        if x == 0:
            ox[0] = _fit_edge(c, sm[k, y, 1], 1.0, ky, mode)
        else:
            ox[0] = _fit_edge(c, sm[k, y, W - 2], -1.0, ky, mode)
    if not hy and H > 1 and hx:
        if y == 0:
            oy[0] = _fit_edge(c, sm[k, 1, x], 1.0, kx, mode)
        else:
            oy[0] = _fit_edge(c, sm[k, H - 2, x], -1.0, kx, mode)


def find_peaks(const float[:, :, ::1] sm, const float[:, :, ::1] raw, float thre, int refine,
               float[:, ::1] out, int[::1] counts, int[::1] stamp, int[::1] cells):
    """Local maxima of ``sm`` (K, H, W) above ``thre``, exactly one per plateau.

    A cell is a candidate when it exceeds ``thre`` and is >= its 4 neighbours. A
    candidate strictly above all of them is a peak. Otherwise it lies on a plateau of
    equal values: the plateau is flood-filled once, dropped if any of its cells has a
    higher neighbour, else it yields one peak at its centroid (the representative cell
    for the score is the plateau cell nearest the centroid, raster order on ties).

    Peaks are written to ``out`` (x, y, raw value), grouped by channel in raster order of
    their first cell, while they fit; ``counts`` gets the number per channel; ``stamp``
    (H*W, all -1 on entry) and ``cells`` (H*W) are work space. Returns the total number
    of peaks (the caller retries with a larger ``out`` when it exceeds its rows).
    """
    cdef Py_ssize_t K = sm.shape[0], H = sm.shape[1], W = sm.shape[2]
    cdef Py_ssize_t cap = out.shape[0]
    cdef Py_ssize_t k, y, x, n = 0, i, end, yy, xx, cy_, cx_, d, rx, ry, first, idx
    cdef int plateau_id = 0, chan_base = 0, maximal, tied, minx, maxx, miny, maxy
    cdef float v, u
    cdef double ox, oy, sx, sy, cx, cy, best, dist, ddx, ddy, px, py
    with nogil:
        for k in range(K):
            counts[k] = 0
            # Stamps below this id belong to earlier channels' plateaus.
            chan_base = plateau_id
            for y in range(H):
                for x in range(W):
                    v = sm[k, y, x]
                    if not (v > thre):
                        continue
                    tied = 0
                    if y > 0:
                        u = sm[k, y - 1, x]
                        if u > v:
                            continue
                        tied = tied | (u == v)
                    if y < H - 1:
                        u = sm[k, y + 1, x]
                        if u > v:
                            continue
                        tied = tied | (u == v)
                    if x > 0:
                        u = sm[k, y, x - 1]
                        if u > v:
                            continue
                        tied = tied | (u == v)
                    if x < W - 1:
                        u = sm[k, y, x + 1]
                        if u > v:
                            continue
                        tied = tied | (u == v)
                    if not tied:
                        _refine(sm, k, y, x, refine, &ox, &oy)
                        if n < cap:
                            out[n, 0] = <float>(x + ox)
                            out[n, 1] = <float>(y + oy)
                            out[n, 2] = raw[k, y, x]
                        n += 1
                        counts[k] += 1
                        continue
                    if stamp[y * W + x] >= chan_base:
                        continue
                    # Flood fill the plateau; cells[0:end] collects it (BFS queue).
                    cells[0] = <int>(y * W + x)
                    stamp[y * W + x] = plateau_id
                    end = 1
                    i = 0
                    maximal = 1
                    while i < end:
                        idx = cells[i]
                        i += 1
                        cy_ = idx // W
                        cx_ = idx - cy_ * W
                        for d in range(4):
                            yy = cy_
                            xx = cx_
                            if d == 0:
                                yy = cy_ - 1
                            elif d == 1:
                                yy = cy_ + 1
                            elif d == 2:
                                xx = cx_ - 1
                            else:
                                xx = cx_ + 1
                            if yy < 0 or yy >= H or xx < 0 or xx >= W:
                                continue
                            u = sm[k, yy, xx]
                            if u > v:
                                maximal = 0
                            elif u == v and stamp[yy * W + xx] != plateau_id:
                                stamp[yy * W + xx] = plateau_id
                                cells[end] = <int>(yy * W + xx)
                                end += 1
                    plateau_id += 1
                    if not maximal:
                        continue
                    sx = 0.0
                    sy = 0.0
                    minx = W
                    maxx = -1
                    miny = H
                    maxy = -1
                    first = H * W
                    for i in range(end):
                        idx = cells[i]
                        cy_ = idx // W
                        cx_ = idx - cy_ * W
                        sx += cx_
                        sy += cy_
                        if cx_ < minx:
                            minx = <int>cx_
                        if cx_ > maxx:
                            maxx = <int>cx_
                        if cy_ < miny:
                            miny = <int>cy_
                        if cy_ > maxy:
                            maxy = <int>cy_
                        if idx < first:
                            first = idx
                    cx = sx / end
                    cy = sy / end
                    best = 1e300
                    rx = 0
                    ry = 0
                    for i in range(end):
                        idx = cells[i]
                        cy_ = idx // W
                        cx_ = idx - cy_ * W
                        ddx = cx_ - cx
                        ddy = cy_ - cy
                        dist = ddx * ddx + ddy * ddy
                        if dist < best or (dist == best and cy_ * W + cx_ < ry * W + rx):
                            best = dist
                            rx = cx_
                            ry = cy_
                    px = cx
                    py = cy
                    # Along an axis where the plateau is one cell thick, refine as usual.
                    if minx == maxx:
                        px = rx
                        if refine and 0 < rx < W - 1:
                            px = rx + _fit(sm[k, ry, rx - 1], v, sm[k, ry, rx + 1], refine)
                    if miny == maxy:
                        py = ry
                        if refine and 0 < ry < H - 1:
                            py = ry + _fit(sm[k, ry - 1, rx], v, sm[k, ry + 1, rx], refine)
                    # The scan meets a plateau at its first raster cell, so peaks stay in
                    # raster order of first cells without sorting.
                    if n < cap:
                        out[n, 0] = <float>px
                        out[n, 1] = <float>py
                        out[n, 2] = raw[k, ry, rx]
                    n += 1
                    counts[k] += 1
    return n


# ---------------------------------------------------------------------------------------
# Limb candidates
# ---------------------------------------------------------------------------------------
cdef struct Cand:
    double score
    int i
    int j


cdef int _cmp_cand(const void* pa, const void* pb) noexcept nogil:
    # Score descending, then (i, j) ascending: a total order, so ties resolve the same
    # way in the reference (np.lexsort on (j, i, -score)).
    cdef const Cand* a = <const Cand*>pa
    cdef const Cand* b = <const Cand*>pb
    if a.score > b.score:
        return -1
    if a.score < b.score:
        return 1
    if a.i != b.i:
        return -1 if a.i < b.i else 1
    if a.j != b.j:
        return -1 if a.j < b.j else 1
    return 0


cdef inline double _project(const float[:, :, ::1] pafs, Py_ssize_t l, double px, double py,
                            double ux, double uy, int bilinear) noexcept nogil:
    # PAF of limb l at (px, py) projected on (ux, uy): the same arithmetic as
    # _sample(2l) * ux + _sample(2l + 1) * uy, with the cell and weights found once.
    cdef Py_ssize_t H = pafs.shape[1], W = pafs.shape[2]
    cdef Py_ssize_t ix, iy, x0, y0, x1, y1, cx = 2 * l, cy = 2 * l + 1
    cdef double fx, fy, gx, gy, top, bot, vx, vy
    if not bilinear:
        ix = <Py_ssize_t>fmin(fmax(floor(px + 0.5), 0.0), W - 1.0)
        iy = <Py_ssize_t>fmin(fmax(floor(py + 0.5), 0.0), H - 1.0)
        return <double>pafs[cx, iy, ix] * ux + <double>pafs[cy, iy, ix] * uy
    px = fmin(fmax(px, 0.0), W - 1.0)
    py = fmin(fmax(py, 0.0), H - 1.0)
    fx = floor(px)
    fy = floor(py)
    x0 = <Py_ssize_t>fx
    y0 = <Py_ssize_t>fy
    fx = px - fx
    fy = py - fy
    gx = 1.0 - fx
    gy = 1.0 - fy
    x1 = x0 + 1 if x0 + 1 < W else W - 1
    y1 = y0 + 1 if y0 + 1 < H else H - 1
    top = gx * <double>pafs[cx, y0, x0] + fx * <double>pafs[cx, y0, x1]
    bot = gx * <double>pafs[cx, y1, x0] + fx * <double>pafs[cx, y1, x1]
    vx = gy * top + fy * bot
    top = gx * <double>pafs[cy, y0, x0] + fx * <double>pafs[cy, y0, x1]
    bot = gx * <double>pafs[cy, y1, x0] + fx * <double>pafs[cy, y1, x1]
    vy = gy * top + fy * bot
    return vx * ux + vy * uy


def connect_limbs(const float[:, ::1] peaks, const int[::1] offsets,
                  const float[:, :, ::1] pafs, const int[:, ::1] limb_index,
                  const int[::1] order, int n_samples, double thre2, double min_frac,
                  double image_h, double stride, int bilinear, double[:, ::1] out,
                  int match=1):
    """Score every (A, B) peak pair of each limb and match greedily (CMU's rule).

    For each pair: ``n_samples`` points evenly spaced from A to B (inclusive), PAF
    projected on the unit vector A->B; score = mean + min(0.5 * image_h / length - 1, 0)
    with the length in input pixels (cells * stride). A pair is a candidate when more
    than ``min_frac`` of the samples exceed ``thre2`` and the score is positive.
    Candidates are taken by descending score, each peak at most once per limb.

    With ``match=0`` every candidate is written instead (no matching), by descending
    score within each limb; ``out`` then needs sum over limbs of nA * nB rows.

    Writes rows [limb, global id of A, global id of B, score] into ``out`` (its rows
    must be >= sum over limbs of min(nA, nB)); returns the number of rows.
    """
    cdef Py_ssize_t L = order.shape[0], nout = 0
    cdef Py_ssize_t oi, l, ka, kb, oa, ob, na, nb, i, j, t, m, ncand, taken, maxpair = 0
    cdef double ax, ay, dx, dy, norm, ux, uy, s, v, f, px, py, score, denom
    cdef int cnt
    cdef Cand* cand
    cdef char* used_a
    cdef char* used_b
    cdef Py_ssize_t maxn = 0
    for oi in range(L):
        l = order[oi]
        na = offsets[limb_index[l, 0] + 1] - offsets[limb_index[l, 0]]
        nb = offsets[limb_index[l, 1] + 1] - offsets[limb_index[l, 1]]
        if na * nb > maxpair:
            maxpair = na * nb
        if na > maxn:
            maxn = na
        if nb > maxn:
            maxn = nb
    cand = <Cand*>malloc((maxpair + 1) * sizeof(Cand))
    used_a = <char*>malloc(maxn + 1)
    used_b = <char*>malloc(maxn + 1)
    if cand == NULL or used_a == NULL or used_b == NULL:
        free(cand)
        free(used_a)
        free(used_b)
        raise MemoryError("connect_limbs: cannot allocate candidate buffers")
    denom = n_samples - 1.0
    try:
        with nogil:
            for oi in range(L):
                l = order[oi]
                ka = limb_index[l, 0]
                kb = limb_index[l, 1]
                oa = offsets[ka]
                ob = offsets[kb]
                na = offsets[ka + 1] - oa
                nb = offsets[kb + 1] - ob
                if na == 0 or nb == 0:
                    continue
                ncand = 0
                for i in range(na):
                    ax = peaks[oa + i, 0]
                    ay = peaks[oa + i, 1]
                    for j in range(nb):
                        dx = peaks[ob + j, 0] - ax
                        dy = peaks[ob + j, 1] - ay
                        norm = sqrt(dx * dx + dy * dy)
                        if not (norm > 1e-9):
                            continue
                        ux = dx / norm
                        uy = dy / norm
                        s = 0.0
                        cnt = 0
                        for t in range(n_samples):
                            # Stop once the support test can no longer pass: a rejected
                            # pair's score is never used (most pairs of a busy map fail).
                            if cnt + (n_samples - t) <= min_frac * n_samples:
                                break
                            f = t / denom
                            px = ax + dx * f
                            py = ay + dy * f
                            v = _project(pafs, l, px, py, ux, uy, bilinear)
                            s += v
                            if v > thre2:
                                cnt += 1
                        if not (cnt > min_frac * n_samples):
                            continue
                        score = s / n_samples + fmin(0.5 * image_h / (norm * stride) - 1.0, 0.0)
                        if score > 0:
                            cand[ncand].score = score
                            cand[ncand].i = <int>i
                            cand[ncand].j = <int>j
                            ncand += 1
                if ncand == 0:
                    continue
                qsort(cand, ncand, sizeof(Cand), _cmp_cand)
                if not match:
                    for t in range(ncand):
                        out[nout, 0] = l
                        out[nout, 1] = oa + cand[t].i
                        out[nout, 2] = ob + cand[t].j
                        out[nout, 3] = cand[t].score
                        nout += 1
                    continue
                for i in range(na):
                    used_a[i] = 0
                for j in range(nb):
                    used_b[j] = 0
                taken = 0
                m = na if na < nb else nb
                for t in range(ncand):
                    i = cand[t].i
                    j = cand[t].j
                    if used_a[i] or used_b[j]:
                        continue
                    used_a[i] = 1
                    used_b[j] = 1
                    out[nout, 0] = l
                    out[nout, 1] = oa + i
                    out[nout, 2] = ob + j
                    out[nout, 3] = cand[t].score
                    nout += 1
                    taken += 1
                    if taken == m:
                        break
    finally:
        free(cand)
        free(used_a)
        free(used_b)
    return nout


# ---------------------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------------------
cdef inline void _start_person(int[:, ::1] parts, double[::1] total, int[::1] count,
                               unsigned char[::1] alive, Py_ssize_t p, const float[:, ::1] peaks,
                               Py_ssize_t ka, int a, Py_ssize_t kb, int b,
                               double sc) noexcept nogil:
    # Row p becomes a person of peak a (keypoint ka) and peak b (keypoint kb) joined by a
    # limb of score sc: both greedy passes start people this way.
    cdef Py_ssize_t kk
    for kk in range(parts.shape[1]):
        parts[p, kk] = -1
    parts[p, ka] = a
    parts[p, kb] = b
    total[p] = <double>peaks[a, 2] + <double>peaks[b, 2] + sc
    count[p] = 2
    alive[p] = 1


cdef inline Py_ssize_t _keep_people(int[:, ::1] parts, double[::1] total, int[::1] count,
                                    const unsigned char[::1] alive, Py_ssize_t n,
                                    int min_parts, double min_score) noexcept nogil:
    # Of rows [0, n), the alive people with at least min_parts parts and a mean score
    # (total / parts) of at least min_score, compacted to the front in order; their number.
    cdef Py_ssize_t p, q = 0, kk
    for p in range(n):
        if not alive[p] or count[p] < min_parts or total[p] / count[p] < min_score:
            continue
        if q != p:
            for kk in range(parts.shape[1]):
                parts[q, kk] = parts[p, kk]
            total[q] = total[p]
            count[q] = count[p]
        q += 1
    return q


def assemble(const double[:, ::1] conns, const float[:, ::1] peaks, const int[:, ::1] limb_index,
             const unsigned char[::1] no_start, int min_parts, double min_score,
             int[:, ::1] parts, double[::1] total, int[::1] count, unsigned char[::1] alive):
    """Group connections into people, CMU's way, generalised to any limb direction.

    For each connection (a, b) of limb (ka, kb), in order, look for the people whose
    slot ka holds a or whose slot kb holds b:
      - one person: fill the empty endpoint slot if the other endpoint matches (a slot
        already holding a different peak is never overwritten);
      - two people with disjoint keypoint slots: merge the second into the first;
      - none: start a person with both endpoints, unless the limb is a no-start limb;
      - otherwise (conflicting people, or more than two): ignore the connection.
    Scores: a new person gets score(a) + score(b) + s, an attached part adds score + s, a
    merge adds the other person's total + s. People with fewer than ``min_parts`` parts or
    total / parts below ``min_score`` are dropped at the end.

    ``parts`` (rows >= connections, K), ``total``, ``count``, ``alive`` are work and output
    space; kept people are compacted to the front in creation order. Returns their number.
    """
    cdef Py_ssize_t C = conns.shape[0], K = parts.shape[1]
    cdef Py_ssize_t np_ = 0, c, l, ka, kb, p, h0, h1, nh, q, kk
    cdef int a, b, disjoint
    cdef double sc
    with nogil:
        for c in range(C):
            l = <Py_ssize_t>conns[c, 0]
            a = <int>conns[c, 1]
            b = <int>conns[c, 2]
            sc = conns[c, 3]
            ka = limb_index[l, 0]
            kb = limb_index[l, 1]
            nh = 0
            h0 = -1
            h1 = -1
            for p in range(np_):
                if alive[p] and (parts[p, ka] == a or parts[p, kb] == b):
                    if nh == 0:
                        h0 = p
                    elif nh == 1:
                        h1 = p
                    nh += 1
            if nh == 1:
                if parts[h0, kb] == -1 and parts[h0, ka] == a:
                    parts[h0, kb] = b
                    total[h0] += <double>peaks[b, 2] + sc
                    count[h0] += 1
                elif parts[h0, ka] == -1 and parts[h0, kb] == b:
                    parts[h0, ka] = a
                    total[h0] += <double>peaks[a, 2] + sc
                    count[h0] += 1
            elif nh == 2:
                disjoint = 1
                for kk in range(K):
                    if parts[h0, kk] != -1 and parts[h1, kk] != -1:
                        disjoint = 0
                        break
                if disjoint:
                    for kk in range(K):
                        if parts[h0, kk] == -1:
                            parts[h0, kk] = parts[h1, kk]
                    total[h0] += total[h1] + sc
                    count[h0] += count[h1]
                    alive[h1] = 0
            elif nh == 0 and not no_start[l]:
                _start_person(parts, total, count, alive, np_, peaks, ka, a, kb, b, sc)
                np_ += 1
        q = _keep_people(parts, total, count, alive, np_, min_parts, min_score)
    return q


# ---------------------------------------------------------------------------------------
# Crowd assembly: optimal matching per limb, then a best-first pass with shared peaks
# ---------------------------------------------------------------------------------------
cdef void _hungarian(const double* cost, Py_ssize_t n, Py_ssize_t m, double* u, double* v,
                     Py_ssize_t* p, Py_ssize_t* way, double* minv, char* used) noexcept nogil:
    # Minimum-cost assignment of every row of the n x m (n <= m) matrix ``cost`` (row
    # major) to a distinct column, by shortest augmenting paths with potentials. Arrays
    # are 1-based with m + 1 (u: n + 1) entries; on return p[j] is the row (1..n) given
    # column j, 0 for none.
    cdef Py_ssize_t i, j, i0, j0, j1
    cdef double delta, cur, INF = 1e300
    for j in range(m + 1):
        p[j] = 0
        v[j] = 0.0
    for i in range(n + 1):
        u[i] = 0.0
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        for j in range(m + 1):
            minv[j] = INF
            used[j] = 0
        while True:
            used[j0] = 1
            i0 = p[j0]
            delta = INF
            j1 = 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[(i0 - 1) * m + (j - 1)] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1


def match_limbs(const double[:, ::1] cands, Py_ssize_t npeaks, double[:, ::1] out):
    """Per limb, the matching of its candidates with the largest total score.

    ``cands`` are rows [limb, a, b, score] (peak ids < ``npeaks``) with each limb's rows
    contiguous, as :func:`connect_limbs` writes them with ``match=0``. For each limb
    block, the peaks that appear in it are matched one-to-one maximising the sum of
    scores (a pair that is no candidate is worth 0 and never output). Matched rows are
    written to ``out`` block by block, by descending score (ties: a, then b); returns
    their number.
    """
    cdef Py_ssize_t C = cands.shape[0], start = 0, end, r, i, j, n, m, nout = 0, t, x
    cdef Py_ssize_t na, nb
    cdef int flip
    cdef int* slot = <int*>malloc((npeaks + 1) * sizeof(int))
    cdef int* ia = <int*>malloc((C + 1) * sizeof(int))
    cdef int* ib = <int*>malloc((C + 1) * sizeof(int))
    cdef Cand* sel = <Cand*>malloc((C + 1) * sizeof(Cand))
    cdef double* cost = NULL
    cdef int* rowof = NULL
    cdef double* u = NULL
    cdef double* v = NULL
    cdef double* minv = NULL
    cdef Py_ssize_t* p = NULL
    cdef Py_ssize_t* way = NULL
    cdef char* used = NULL
    try:
        if slot == NULL or ia == NULL or ib == NULL or sel == NULL:
            raise MemoryError("match_limbs: cannot allocate work space")
        for x in range(npeaks):
            slot[x] = -1
        while start < C:
            end = start
            while end < C and cands[end, 0] == cands[start, 0]:
                end += 1
            # Distinct peaks of the block on each side, numbered in order of appearance.
            na = 0
            for r in range(start, end):
                x = <Py_ssize_t>cands[r, 1]
                if slot[x] == -1:
                    slot[x] = <int>na
                    na += 1
                ia[r] = slot[x]
            for r in range(start, end):
                slot[<Py_ssize_t>cands[r, 1]] = -1
            nb = 0
            for r in range(start, end):
                x = <Py_ssize_t>cands[r, 2]
                if slot[x] == -1:
                    slot[x] = <int>nb
                    nb += 1
                ib[r] = slot[x]
            for r in range(start, end):
                slot[<Py_ssize_t>cands[r, 2]] = -1
            flip = nb < na            # rows = the smaller side
            n = nb if flip else na
            m = na if flip else nb
            cost = <double*>malloc(n * m * sizeof(double))
            rowof = <int*>malloc(n * m * sizeof(int))
            u = <double*>malloc((n + 1) * sizeof(double))
            v = <double*>malloc((m + 1) * sizeof(double))
            minv = <double*>malloc((m + 1) * sizeof(double))
            p = <Py_ssize_t*>malloc((m + 1) * sizeof(Py_ssize_t))
            way = <Py_ssize_t*>malloc((m + 1) * sizeof(Py_ssize_t))
            used = <char*>malloc(m + 1)
            if (cost == NULL or rowof == NULL or u == NULL or v == NULL or minv == NULL
                    or p == NULL or way == NULL or used == NULL):
                raise MemoryError("match_limbs: cannot allocate the cost matrix")
            with nogil:
                for i in range(n * m):
                    cost[i] = 0.0
                    rowof[i] = -1
                for r in range(start, end):
                    i = ib[r] if flip else ia[r]
                    j = ia[r] if flip else ib[r]
                    cost[i * m + j] = -cands[r, 3]
                    rowof[i * m + j] = <int>r
                _hungarian(cost, n, m, u, v, p, way, minv, used)
                t = 0
                for j in range(1, m + 1):
                    if p[j] == 0:
                        continue
                    r = rowof[(p[j] - 1) * m + (j - 1)]
                    if r < 0:
                        continue
                    sel[t].score = cands[r, 3]
                    sel[t].i = <int>cands[r, 1]
                    sel[t].j = <int>cands[r, 2]
                    t += 1
                qsort(sel, t, sizeof(Cand), _cmp_cand)
                for i in range(t):
                    out[nout, 0] = cands[start, 0]
                    out[nout, 1] = sel[i].i
                    out[nout, 2] = sel[i].j
                    out[nout, 3] = sel[i].score
                    nout += 1
            free(cost)
            free(rowof)
            free(u)
            free(v)
            free(minv)
            free(p)
            free(way)
            free(used)
            cost = NULL
            rowof = NULL
            u = NULL
            v = NULL
            minv = NULL
            p = NULL
            way = NULL
            used = NULL
            start = end
    finally:
        free(slot)
        free(ia)
        free(ib)
        free(sel)
        free(cost)
        free(rowof)
        free(u)
        free(v)
        free(minv)
        free(p)
        free(way)
        free(used)
    return nout


cdef struct Ranked:
    double score
    Py_ssize_t row


cdef int _cmp_ranked(const void* pa, const void* pb) noexcept nogil:
    # Score descending, then row ascending: the reference's stable argsort of -score.
    cdef const Ranked* a = <const Ranked*>pa
    cdef const Ranked* b = <const Ranked*>pb
    if a.score > b.score:
        return -1
    if a.score < b.score:
        return 1
    return -1 if a.row < b.row else (1 if a.row > b.row else 0)


cdef inline void _own_add(int[:, ::1] own, Py_ssize_t pk, int g) noexcept nogil:
    if own[pk, 0] == -1:
        own[pk, 0] = g
    else:
        own[pk, 1] = g


cdef inline void _own_replace(int[:, ::1] own, Py_ssize_t pk, int old, int new) noexcept nogil:
    # ``old`` hands peak pk to ``new``; if new already owns it, old just leaves.
    if own[pk, 0] == new or own[pk, 1] == new:
        if own[pk, 0] == old:
            own[pk, 0] = own[pk, 1]
        own[pk, 1] = -1
    elif own[pk, 0] == old:
        own[pk, 0] = new
    else:
        own[pk, 1] = new


def assemble_crowd(const double[:, ::1] conns, const float[:, ::1] peaks,
                   const int[:, ::1] limb_index, const unsigned char[::1] no_start,
                   int n_init, int share, int min_parts, double min_score, int[:, ::1] parts,
                   double[::1] total, int[::1] count, unsigned char[::1] alive,
                   int[:, ::1] own):
    """Best-first pass over all limb candidates, growing and joining people.

    ``parts[:n_init]`` / ``total[:n_init]`` hold the starting people (peak ids, -1 for
    none; each peak in at most one). Candidates are taken by descending score (ties in
    row order). A candidate (a, b) of limb (ka, kb) joins an owner of a (or a alone)
    with an owner of b (or b alone), owners tried in the order they took the peak, when
    the union holds at most one peak per keypoint (the same peak in a slot of both is
    fine); two lone peaks joined by a no-start limb stay apart. Failing that, with
    ``share``, the first owner of a, then of b, that lacks the other endpoint's keypoint
    takes that peak too, provided it has exactly one owner: two people's keypoints that
    fell on one peak then both get it, instead of one losing the keypoint and the chain
    behind it.

    Scores: a join adds a's side + b's side + the limb score (a lone peak counts its
    value); a shared peak adds its value + the limb score. A union keeps the older
    person. ``parts`` (rows >= n_init + candidates, K), ``total``, ``count`` and
    ``alive`` are output and work space; ``own`` (P, 2) is work space. People are
    filtered as in :func:`assemble` and compacted in creation order; returns their
    number.
    """
    cdef Py_ssize_t C = conns.shape[0], K = parts.shape[1], P = own.shape[0]
    cdef Py_ssize_t np_ = n_init, r, c, l, ka, kb, p, q, kk, keep, drop, x, kx, s_
    cdef int a, b, ga, gb, clash, joined, ia_, ib_, na, nb
    cdef int oa[2]
    cdef int ob[2]
    cdef double sc, t
    cdef Ranked* rank = <Ranked*>malloc((C + 1) * sizeof(Ranked))
    if rank == NULL:
        raise MemoryError("assemble_crowd: cannot allocate the ranking")
    try:
        with nogil:
            for r in range(C):
                rank[r].score = conns[r, 3]
                rank[r].row = r
            qsort(rank, C, sizeof(Ranked), _cmp_ranked)
            for p in range(P):
                own[p, 0] = -1
                own[p, 1] = -1
            for p in range(n_init):
                alive[p] = 1
                count[p] = 0
                for kk in range(K):
                    if parts[p, kk] != -1:
                        count[p] += 1
                        _own_add(own, parts[p, kk], <int>p)
            for r in range(C):
                c = rank[r].row
                l = <Py_ssize_t>conns[c, 0]
                a = <int>conns[c, 1]
                b = <int>conns[c, 2]
                sc = conns[c, 3]
                ka = limb_index[l, 0]
                kb = limb_index[l, 1]
                oa[0] = own[a, 0]
                oa[1] = own[a, 1]
                ob[0] = own[b, 0]
                ob[1] = own[b, 1]
                na = (oa[0] != -1) + (oa[1] != -1)
                nb = (ob[0] != -1) + (ob[1] != -1)
                clash = 0
                for ia_ in range(na):
                    for ib_ in range(nb):
                        if oa[ia_] == ob[ib_]:
                            clash = 1
                if clash:
                    continue
                joined = 0
                for ia_ in range(na if na else 1):
                    ga = oa[ia_] if na else -1
                    for ib_ in range(nb if nb else 1):
                        gb = ob[ib_] if nb else -1
                        if ga == -1 and gb == -1:
                            if no_start[l]:
                                continue
                            _start_person(parts, total, count, alive, np_, peaks, ka, a, kb, b,
                                          sc)
                            own[a, 0] = <int>np_
                            own[b, 0] = <int>np_
                            np_ += 1
                        elif gb == -1:
                            if parts[ga, kb] != -1:
                                continue
                            parts[ga, kb] = b
                            total[ga] = total[ga] + <double>peaks[b, 2] + sc
                            count[ga] += 1
                            own[b, 0] = ga
                        elif ga == -1:
                            if parts[gb, ka] != -1:
                                continue
                            parts[gb, ka] = a
                            total[gb] = <double>peaks[a, 2] + total[gb] + sc
                            count[gb] += 1
                            own[a, 0] = gb
                        else:
                            clash = 0
                            for kk in range(K):
                                if (parts[ga, kk] != -1 and parts[gb, kk] != -1
                                        and parts[ga, kk] != parts[gb, kk]):
                                    clash = 1
                                    break
                            if clash:
                                continue
                            keep = ga if ga < gb else gb
                            drop = gb if ga < gb else ga
                            t = total[ga] + total[gb] + sc
                            for kk in range(K):
                                x = parts[drop, kk]
                                if x != -1:
                                    _own_replace(own, x, <int>drop, <int>keep)
                                    parts[keep, kk] = <int>x
                            count[keep] = 0
                            for kk in range(K):
                                if parts[keep, kk] != -1:
                                    count[keep] += 1
                            total[keep] = t
                            alive[drop] = 0
                        joined = 1
                        break
                    if joined:
                        break
                if joined or not share:
                    continue
                for s_ in range(na + nb):
                    if s_ < na:
                        p = oa[s_]
                        x = b
                        kx = kb
                    else:
                        p = ob[s_ - na]
                        x = a
                        kx = ka
                    if parts[p, kx] == -1 and own[x, 0] != -1 and own[x, 1] == -1:
                        parts[p, kx] = <int>x
                        total[p] = total[p] + <double>peaks[x, 2] + sc
                        count[p] += 1
                        own[x, 1] = <int>p
                        break
            q = _keep_people(parts, total, count, alive, np_, min_parts, min_score)
    finally:
        free(rank)
    return q
