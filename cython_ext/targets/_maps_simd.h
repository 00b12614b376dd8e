/* SSE2 rows of 8 heatmap cells for cython_ext/targets/_maps.pyx (render_heatmaps).
 *
 * Each function does, for i = 0..7, exactly what the scalar loops in _maps.pyx do for one
 * cell, with the same operations in the same precision, so results are bit-identical:
 *   g   = gx[i] * gy                  (double), 0 where ex[i] + ey > cut
 *   max:      v = (float)g if (float)g > row[i] else row[i]
 *   sum_clip: t = row[i] + g (double); v = (float)(t if t < 1 else 1)
 *   row[i] = v;  bg[i] = min(1 - v, bg[i])   (float)
 * A cell outside the Gaussian's window is passed with ex = +inf (so g = 0): its row and
 * background values are left as they are.
 * MXP_SIMD8 is 0 where SSE2 is not available; _maps.pyx then uses its scalar loops only.
 */
#ifndef MXPOSE_MAPS_SIMD_H
#define MXPOSE_MAPS_SIMD_H

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#define MXP_SIMD8 1
#include <emmintrin.h>

/* g for cells h..h+3: two pairs of doubles, zeroed past the cut. */
#define MXP_G2(gx, ex, h, gyv, eyv, cutv)                                              \
    _mm_and_pd(_mm_mul_pd(_mm_loadu_pd((gx) + (h)), (gyv)),                             \
               _mm_cmple_pd(_mm_add_pd(_mm_loadu_pd((ex) + (h)), (eyv)), (cutv)))

static inline void mxp_row8_max(float *row, float *bg, const double *gx, const double *ex,
                                double gy, double ey, double cut) {
    const __m128d gyv = _mm_set1_pd(gy), eyv = _mm_set1_pd(ey), cutv = _mm_set1_pd(cut);
    const __m128 one = _mm_set1_ps(1.0f);
    int h;
    for (h = 0; h < 8; h += 4) {
        __m128 g = _mm_movelh_ps(_mm_cvtpd_ps(MXP_G2(gx, ex, h, gyv, eyv, cutv)),
                                 _mm_cvtpd_ps(MXP_G2(gx, ex, h + 2, gyv, eyv, cutv)));
        __m128 v = _mm_max_ps(g, _mm_loadu_ps(row + h));
        _mm_storeu_ps(row + h, v);
        _mm_storeu_ps(bg + h, _mm_min_ps(_mm_sub_ps(one, v), _mm_loadu_ps(bg + h)));
    }
}

static inline void mxp_row8_sum(float *row, float *bg, const double *gx, const double *ex,
                                double gy, double ey, double cut) {
    const __m128d gyv = _mm_set1_pd(gy), eyv = _mm_set1_pd(ey), cutv = _mm_set1_pd(cut);
    const __m128d oned = _mm_set1_pd(1.0);
    const __m128 one = _mm_set1_ps(1.0f);
    int h;
    for (h = 0; h < 8; h += 4) {
        __m128 r = _mm_loadu_ps(row + h);
        __m128d t0 = _mm_add_pd(_mm_cvtps_pd(r), MXP_G2(gx, ex, h, gyv, eyv, cutv));
        __m128d t1 = _mm_add_pd(_mm_cvtps_pd(_mm_movehl_ps(r, r)),
                                MXP_G2(gx, ex, h + 2, gyv, eyv, cutv));
        __m128 v = _mm_movelh_ps(_mm_cvtpd_ps(_mm_min_pd(t0, oned)),
                                 _mm_cvtpd_ps(_mm_min_pd(t1, oned)));
        _mm_storeu_ps(row + h, v);
        _mm_storeu_ps(bg + h, _mm_min_ps(_mm_sub_ps(one, v), _mm_loadu_ps(bg + h)));
    }
}
#else
#define MXP_SIMD8 0
static inline void mxp_row8_max(float *row, float *bg, const double *gx, const double *ex,
                                double gy, double ey, double cut) {}
static inline void mxp_row8_sum(float *row, float *bg, const double *gx, const double *ex,
                                double gy, double ey, double cut) {}
#endif

#endif
