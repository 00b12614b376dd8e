"""Ground-truth maps: compiled kernels vs plain-NumPy references, hand-computed cases,
CMU caffe_train reproduction, flip equivariance and wrapper validation."""
import math

import numpy as np
import pytest

from mxpose.config import default_config
from mxpose.skeleton import get_skeleton
from mxpose.targets import (TargetRenderer, expand_mask, render_heatmaps, render_masks,
                            render_pafs, render_targets)

import reference as R

SK = get_skeleton("openpose_coco18")
ATOL = 1e-6


def random_people(seed, n, k=18, lo=-60.0, hi=430.0, p_label=0.8):
    """n people with coordinates partly off a 368 px input, some unlabelled."""
    rng = np.random.default_rng(seed)
    kp = np.zeros((n, k, 3), dtype=np.float32)
    centre = rng.uniform(lo, hi, (n, 1, 2))
    spread = rng.uniform(10, 120, (n, 1, 1))
    kp[..., :2] = centre + rng.normal(0, 1, (n, k, 2)) * spread
    kp[..., 2] = np.where(rng.random((n, k)) < p_label, rng.integers(1, 3, (n, k)), 0)
    return kp


def edge_people():
    """Zero-length, 1-pixel, off-map and overlapping limbs in one set of people."""
    kp = random_people(7, 4)
    a, b = SK.limb_index[0]
    kp[0, b, :2] = kp[0, a, :2]                       # zero-length limb
    kp[0, [a, b], 2] = 2
    a, b = SK.limb_index[1]
    kp[1, b, :2] = kp[1, a, :2] + [1.0, 0.0]          # 1-pixel limb
    kp[1, [a, b], 2] = 1
    a, b = SK.limb_index[2]
    kp[2, a, :2] = [-500.0, 100.0]                    # crosses the map from far outside
    kp[2, b, :2] = [900.0, 200.0]
    kp[2, [a, b], 2] = 2
    kp[3, 5, :2] = [1e30, -1e30]                      # absurdly far away: nothing drawn
    twin = kp[:2].copy()
    twin[..., :2] += 3.0                              # overlapping people
    rev = kp[2:3].copy()
    rev[0, SK.limb_index[2]] = rev[0, SK.limb_index[2][::-1]]   # opposite limb, same cells
    return np.concatenate([kp, twin, rev])


CASES = [(s, n) for s, n in [(0, 0), (1, 1), (2, 3), (3, 10)]]


# -- kernel == reference ----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["centered", "cmu"])
@pytest.mark.parametrize("merge", ["max", "sum_clip"])
@pytest.mark.parametrize("seed,n", CASES)
def test_heatmaps_match_reference(mode, merge, seed, n):
    kp = random_people(seed, n)
    got = render_heatmaps(kp, (46, 46), 8, 7.0, merge=merge, mode=mode)
    want = R.heatmaps_ref(kp, (46, 46), 8, 7.0, merge=merge, mode=mode)
    assert got.shape == (19, 46, 46) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


@pytest.mark.parametrize("mode", ["centered", "cmu"])
@pytest.mark.parametrize("seed,n", CASES)
def test_pafs_match_reference(mode, seed, n):
    kp = random_people(seed, n)
    got = render_pafs(kp, SK.limb_index, (46, 46), 8, 1.0, mode=mode)
    want = R.pafs_ref(kp, SK.limb_index, (46, 46), 8, 1.0, mode=mode)
    assert got.shape == (38, 46, 46) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


@pytest.mark.parametrize("mode", ["centered", "cmu"])
def test_edge_cases_match_reference(mode):
    kp = edge_people()
    for merge in ("max", "sum_clip"):
        np.testing.assert_allclose(render_heatmaps(kp, (46, 46), merge=merge, mode=mode),
                                   R.heatmaps_ref(kp, (46, 46), merge=merge, mode=mode),
                                   rtol=0, atol=ATOL)
    got = render_pafs(kp, SK.limb_index, (46, 46), mode=mode)
    np.testing.assert_allclose(got, R.pafs_ref(kp, SK.limb_index, (46, 46), mode=mode),
                               rtol=0, atol=ATOL)
    assert np.abs(got[4:6]).max() > 0                     # the far-reaching limb is drawn


@pytest.mark.parametrize("mode", ["centered", "cmu"])
@pytest.mark.parametrize("stride,sigma,width,shape", [(4, 3.0, 1.0, (30, 50)),
                                                      (8, 7.0, 1.5, (23, 46)),
                                                      (8, 11.0, 0.5, (46, 20))])
def test_other_geometries_match_reference(mode, stride, sigma, width, shape):
    # Non-square maps catch transposed indices; other strides/sigmas/widths the scaling.
    kp = random_people(11, 5, lo=-20, hi=300)
    np.testing.assert_allclose(
        render_heatmaps(kp, shape, stride, sigma, mode=mode),
        R.heatmaps_ref(kp, shape, stride, sigma, merge="sum_clip" if mode == "cmu" else "max",
                       mode=mode), rtol=0, atol=ATOL)
    np.testing.assert_allclose(render_pafs(kp, SK.limb_index, shape, stride, width, mode=mode),
                               R.pafs_ref(kp, SK.limb_index, shape, stride, width, mode=mode),
                               rtol=0, atol=ATOL)


@pytest.mark.parametrize("merge", ["max", "sum_clip"])
@pytest.mark.parametrize("shape", [(12, 8), (20, 9), (17, 30)])
def test_eight_cell_rows_at_the_map_edges_match_reference(merge, shape):
    # Gaussians of sigma 7 at stride 8 span <= 8 cells, so on x86 their rows are drawn
    # 8 cells at a time (SSE2); at the right edge the 8 cells start at W - 8 and cover
    # cells left of the window, which must stay as they are. People crowd the edges here,
    # on maps exactly 8 or barely more cells wide.
    rng = np.random.default_rng(17)
    H, W = shape
    kp = np.zeros((6, SK.num_keypoints, 3), np.float32)
    kp[..., 0] = rng.choice([rng.uniform(-20, 30), rng.uniform(8 * W - 40, 8 * W + 20)],
                            size=kp.shape[:2])
    kp[..., 0] += rng.uniform(-6, 6, kp.shape[:2])
    kp[..., 1] = rng.uniform(-20, 8 * H + 20, kp.shape[:2])
    kp[..., 2] = 2
    got = render_heatmaps(kp, shape, 8, 7.0, merge=merge)
    want = R.heatmaps_ref(kp, shape, 8, 7.0, merge=merge)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    assert (got[:-1] > 0.5).any()


def test_every_cell_is_written():
    # Outputs are filled completely: stale values in a reused buffer must not survive.
    kp = random_people(5, 3)
    hm = np.full((19, 46, 46), 123.0, dtype=np.float32)
    paf = np.full((38, 46, 46), np.nan, dtype=np.float32)
    render_heatmaps(kp, (46, 46), out=hm)
    render_pafs(kp, SK.limb_index, (46, 46), out=paf)
    np.testing.assert_array_equal(hm, render_heatmaps(kp, (46, 46)))
    np.testing.assert_array_equal(paf, render_pafs(kp, SK.limb_index, (46, 46)))


# -- hand-computed cases --------------------------------------------------------------
def one_point(x, y, k=0):
    kp = np.zeros((1, 18, 3), dtype=np.float32)
    kp[0, k] = [x, y, 2]
    return kp


def test_gaussian_on_a_cell_centre():
    g, f = 10, 20
    hm = render_heatmaps(one_point(8 * f + 3.5, 8 * g + 3.5), (46, 46), 8, 7.0)
    ch = hm[0]
    assert ch[g, f] == 1.0
    e1 = math.exp(-64 / 98)                  # one cell away: stride^2 / (2 sigma^2)
    for dg, df in [(0, 1), (0, -1), (1, 0), (-1, 0)]:
        assert ch[g + dg, f + df] == pytest.approx(e1, abs=1e-7)
    assert ch[g + 1, f + 1] == pytest.approx(math.exp(-128 / 98), abs=1e-7)
    assert ch[g, f + 2] == pytest.approx(math.exp(-256 / 98), abs=1e-7)
    # The cut: 2 cells diagonally (exponent 512/98 = 5.2) and 3 cells (5.9) are > ln(100).
    assert ch[g + 2, f + 2] == 0 and ch[g, f + 3] == 0
    assert np.count_nonzero(ch) == 21        # |d|^2 <= 4.6052 * 98 / 64 = 7.05 cells^2
    assert not hm[1:18].any()
    np.testing.assert_allclose(hm[18], 1.0 - ch, atol=1e-7)
    assert hm[18, g, f] == 0


def test_merge_max_and_sum_clip():
    kp = np.concatenate([one_point(83.5, 83.5), one_point(83.5, 83.5)])
    e1 = math.exp(-64 / 98)
    mx = render_heatmaps(kp, (46, 46), merge="max")[0]
    sc = render_heatmaps(kp, (46, 46), merge="sum_clip")[0]
    assert mx[10, 10] == 1.0 and mx[10, 11] == pytest.approx(e1, abs=1e-7)
    assert sc[10, 10] == 1.0 and sc[10, 11] == 1.0          # 2 * 0.52 clipped
    assert sc[10, 12] == pytest.approx(2 * math.exp(-256 / 98), abs=1e-6)


def limb_people(*segments, limb=0):
    """One person per (ax, ay, bx, by) segment on limb ``limb`` of openpose_coco18."""
    a, b = SK.limb_index[limb]
    kp = np.zeros((len(segments), 18, 3), dtype=np.float32)
    for i, (ax, ay, bx, by) in enumerate(segments):
        kp[i, a] = [ax, ay, 2]
        kp[i, b] = [bx, by, 2]
    return kp


def c(g):
    """Input pixel of cell g's centre in centred mode (stride 8)."""
    return 8 * g + 3.5


def test_horizontal_limb_centered():
    # From cell (10, 5) to (10, 12): width 1 covers rows 9..11, the box cols 4..13.
    paf = render_pafs(limb_people((c(5), c(10), c(12), c(10))), SK.limb_index, (46, 46))
    want = np.zeros((46, 46), dtype=bool)
    want[9:12, 4:14] = True
    np.testing.assert_array_equal(paf[0] != 0, want)
    assert np.all(paf[0][want] == 1.0) and not paf[1].any() and not paf[2:].any()


def test_horizontal_limb_cmu_box():
    # cmu mode: grid point = (p - 1) / 8, cells at 8g. The same limb in cell units
    # (5, 10) -> (12, 10) gets caffe_train's half-open rounded box: rows 9..10 only
    # (round(11) is excluded) and cols 4..12.
    paf = render_pafs(limb_people((41, 81, 97, 81)), SK.limb_index, (46, 46), mode="cmu")
    want = np.zeros((46, 46), dtype=bool)
    want[9:11, 4:13] = True
    np.testing.assert_array_equal(paf[0] != 0, want)
    assert np.all(paf[0][want] == 1.0)


def test_overlapping_limbs_are_averaged():
    # Opposite directions on the same cells average to zero; a third, perpendicular
    # person on part of them gives the true mean of three unit vectors.
    people = limb_people((c(5), c(10), c(12), c(10)), (c(12), c(10), c(5), c(10)),
                         (c(8), c(6), c(8), c(14)))
    paf = render_pafs(people[:2], SK.limb_index, (46, 46))
    assert not paf.any()
    paf = render_pafs(people, SK.limb_index, (46, 46))
    assert paf[0, 10, 8] == pytest.approx(0.0, abs=1e-7)       # covered by all three
    assert paf[1, 10, 8] == pytest.approx(1 / 3, abs=1e-7)
    assert paf[1, 14, 8] == 1.0 and paf[0, 14, 8] == 0.0       # only the vertical one
    assert paf[0, 10, 5] == 0.0 and paf[1, 10, 5] == 0.0       # the opposite pair
    # Two people in the same direction stay unit length (a sum would give 2).
    same = render_pafs(limb_people((c(5), c(10), c(12), c(10)),
                                   (c(5), c(10.5), c(12), c(10.5))), SK.limb_index, (46, 46))
    assert same[0].max() == 1.0


def test_zero_length_and_tiny_limbs():
    assert not render_pafs(limb_people((100, 100, 100, 100)), SK.limb_index, (46, 46)).any()
    assert not render_pafs(limb_people((100, 100, 100, 100)), SK.limb_index, (46, 46),
                           mode="cmu").any()
    tiny = render_pafs(limb_people((c(10), c(10), c(10) + 1, c(10))), SK.limb_index, (46, 46))
    assert tiny[0, 10, 10] == 1.0 and tiny[0].sum() == 9      # 3x3 cells around it


def test_far_endpoint_keeps_its_direction():
    # An endpoint at 1e30 px must not destroy the limb's line by cancellation: it draws
    # the same cells as an endpoint 1e4 px away in the same direction.
    b = np.array([c(10), c(20)], dtype=np.float32)
    far = limb_people((1e30, -1e30, b[0], b[1]), limb=11)
    near = limb_people((b[0] + 1e4, b[1] - 1e4, b[0], b[1]), limb=11)
    got = render_pafs(far, SK.limb_index, (46, 46))
    assert np.count_nonzero(got[22]) > 20
    np.testing.assert_allclose(got, render_pafs(near, SK.limb_index, (46, 46)), atol=1e-6)
    np.testing.assert_allclose(got, R.pafs_ref(far, SK.limb_index, (46, 46)), atol=1e-6)


def test_unlabelled_endpoint_draws_nothing():
    kp = limb_people((c(5), c(10), c(12), c(10)))
    kp[0, SK.limb_index[0][1], 2] = 0
    assert not render_pafs(kp, SK.limb_index, (46, 46)).any()
    hm = render_heatmaps(kp, (46, 46))
    assert np.count_nonzero(hm[:18]) == 21                    # only the labelled end


# -- CMU reproduction -------------------------------------------------------------------
@pytest.mark.parametrize("seed,n", [(21, 1), (22, 3)])
def test_cmu_mode_reproduces_caffe_train(seed, n):
    kp = random_people(seed, n)
    shifted = kp.copy()
    shifted[..., :2] -= 1.0                                   # what caffe_train holds
    hm, paf = R.cmu_label_maps(shifted, SK.limb_index, (46, 46), average=True)
    np.testing.assert_allclose(render_heatmaps(kp, (46, 46), mode="cmu"), hm, rtol=0,
                               atol=ATOL)
    np.testing.assert_allclose(render_pafs(kp, SK.limb_index, (46, 46), mode="cmu"), paf,
                               rtol=0, atol=ATOL)
    if n == 1:
        # One person: no overlaps, so caffe_train's never-incrementing counter is harmless.
        _, literal = R.cmu_label_maps(shifted, SK.limb_index, (46, 46), average=False)
        np.testing.assert_allclose(paf, literal, rtol=0, atol=ATOL)


def test_cmu_counter_bug_is_not_copied():
    people = limb_people((41, 81, 97, 81), (97, 81, 41, 81), (81, 41, 81, 121))
    shifted = people.copy()
    shifted[..., :2] -= 1.0
    _, literal = R.cmu_label_maps(shifted, SK.limb_index, (46, 46), average=False)
    ours = render_pafs(people, SK.limb_index, (46, 46), mode="cmu")
    # caffe_train: the last person overwrites; ours: the mean of the three.
    assert literal[1, 10, 10] == 1.0
    assert ours[1, 10, 10] == pytest.approx(1 / 3, abs=1e-7)


# -- flip equivariance ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", [31, 32])
def test_flip_then_render_equals_render_then_flip(seed):
    # Holds in centred mode with input width = stride * W (368 = 8 * 46): x' = 367 - x
    # sends cell centre 8g + 3.5 to 8(45 - g) + 3.5 and the PAF boxes are symmetric.
    kp = random_people(seed, 6, lo=0, hi=367)
    fk = SK.flip_keypoints(kp, 368)
    hidx = SK.heatmap_flip_index()
    pidx, psign = SK.paf_flip_index()
    for merge in ("max", "sum_clip"):
        hm = render_heatmaps(kp, (46, 46), merge=merge)
        np.testing.assert_allclose(render_heatmaps(fk, (46, 46), merge=merge),
                                   hm[hidx][:, :, ::-1], rtol=0, atol=1e-5)
    paf = render_pafs(kp, SK.limb_index, (46, 46))
    np.testing.assert_allclose(render_pafs(fk, SK.limb_index, (46, 46)),
                               psign[:, None, None] * paf[pidx][:, :, ::-1], rtol=0, atol=1e-5)


def test_cmu_mode_is_not_flip_equivariant():
    # caffe_train's PAF cells sit at 8g, which a flip maps to 367 - 8g: not a cell.
    kp = random_people(33, 3, lo=0, hi=367)
    fk = SK.flip_keypoints(kp, 368)
    pidx, psign = SK.paf_flip_index()
    paf = render_pafs(kp, SK.limb_index, (46, 46), mode="cmu")
    flipped = psign[:, None, None] * paf[pidx][:, :, ::-1]
    assert not np.allclose(render_pafs(fk, SK.limb_index, (46, 46), mode="cmu"), flipped,
                           atol=1e-3)


# -- masks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(368, 368), (370, 375)])
def test_mask_pooling_matches_reference(shape):
    rng = np.random.default_rng(41)
    sup = (rng.random(shape) > 0.3).astype(np.float32) * rng.random(shape).astype(np.float32)
    got = render_masks(sup, (46, 46), 8)
    np.testing.assert_allclose(got, R.pool_mask_ref(sup, (46, 46), 8), rtol=0, atol=ATOL)


def test_mask_block_semantics_and_types():
    sup = np.ones((368, 368), dtype=bool)
    sup[:8, :8] = False          # exactly cell (0, 0)
    sup[8:12, 8:16] = False      # half of cell (1, 1)
    m = render_masks(sup, (46, 46), 8)
    assert m[0, 0] == 0 and m[1, 1] == 0.5 and m[0, 1] == 1 and m.sum() == 46 * 46 - 1.5
    with pytest.raises(TypeError, match="uint8"):
        render_masks(sup.astype(np.uint8), (46, 46), 8)
    with pytest.raises(ValueError, match="does not cover"):
        render_masks(sup[:300], (46, 46), 8)


def test_expand_mask_weights():
    m = np.full((4, 5), 0.5, dtype=np.float32)
    e = expand_mask(m, 3, weight=[1, 0, 2])
    assert e.shape == (3, 4, 5)
    np.testing.assert_array_equal(e[:, 0, 0], [0.5, 0, 1.0])
    with pytest.raises(ValueError, match="weight"):
        expand_mask(m, 3, weight=[1, 0])


# -- renderer and validation ---------------------------------------------------------------
def test_target_renderer_matches_functions_and_reuses_buffers():
    cfg = default_config()
    r = TargetRenderer.from_config(SK, cfg.aug.input_size, cfg.targets)
    assert r.out_shape == (46, 46) and r.merge == "max"
    kp = random_people(51, 4)
    sup = np.ones((368, 368), dtype=np.float32)
    sup[100:200, 50:90] = 0
    out = r.render(kp, sup)
    np.testing.assert_array_equal(out["heatmaps"], render_heatmaps(kp, (46, 46)))
    np.testing.assert_array_equal(out["pafs"], render_pafs(kp, SK.limb_index, (46, 46)))
    mask = render_masks(sup, (46, 46))
    np.testing.assert_array_equal(out["heat_mask"], np.broadcast_to(mask, (19, 46, 46)))
    np.testing.assert_array_equal(out["paf_mask"], np.broadcast_to(mask, (38, 46, 46)))
    assert out["heatmaps"] is r.heatmaps
    r._count[:] = 12345                       # scratch contents must not matter
    # A second, different sample in the same buffers equals a fresh render.
    kp2 = random_people(52, 2)
    out2 = r.render(kp2, None, copy=True)
    assert out2["heatmaps"] is not r.heatmaps
    np.testing.assert_array_equal(out2["pafs"], render_pafs(kp2, SK.limb_index, (46, 46)))
    assert np.all(out2["heat_mask"] == 1) and np.all(out2["paf_mask"] == 1)
    w = np.ones(19, dtype=np.float32)
    w[3] = 0
    hmask, _ = r.render_masks(sup, heat_weight=w)
    assert not hmask[3].any() and np.array_equal(hmask[4], mask)


def test_render_copy_writes_every_cell_of_new_arrays_and_keeps_the_mask_cache_honest():
    # render(copy=True) draws straight into new (uninitialised) arrays instead of copying
    # the renderer's buffers: every cell must be written, and the renderer's own cached
    # all-ones masks must not be left stale by it.
    r = TargetRenderer(SK, 368)
    kp = random_people(81, 5)
    sup = np.ones((368, 368), dtype=np.float32)
    sup[30:150, 200:260] = 0
    w = np.ones(19, dtype=np.float32)
    w[5] = 0
    want = {k: v.copy() for k, v in r.render(kp, sup, heat_weight=w).items()}
    garbage = [np.full_like(a, np.nan) for a in (r.heatmaps, r.pafs)]
    hm, paf = r.render_maps(kp, out=garbage)
    assert hm is garbage[0] and paf is garbage[1]
    np.testing.assert_array_equal(hm, want["heatmaps"])
    np.testing.assert_array_equal(paf, want["pafs"])
    r.render(random_people(82, 2))               # own masks become all ones (cached)
    got = r.render(kp, sup, heat_weight=w, copy=True)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    assert all(got[k] is not getattr(r, k) for k in ("heatmaps", "pafs", "heat_mask",
                                                      "paf_mask"))
    again = r.render(kp, sup, copy=True)
    assert not np.shares_memory(again["pafs"], got["pafs"])
    # The copy calls pooled a non-trivial mask into r.mask: later calls without a mask,
    # copied or not, must give all-ones masks, not a stale r.mask expanded.
    for copy in (True, False):
        out = r.render(kp, copy=copy)
        assert np.all(out["heat_mask"] == 1) and np.all(out["paf_mask"] == 1)
    out = r.render(kp, heat_weight=w)
    assert not out["heat_mask"][5].any() and np.all(out["heat_mask"][6] == 1)
    with pytest.raises(ValueError, match="heatmaps has shape"):
        r.render_maps(kp, out=(np.zeros((3, 46, 46), np.float32), r.pafs))


def test_render_targets_and_cmu_defaults():
    t = dict(default_config().targets, mode="cmu", heatmap_merge=None)
    kp = random_people(61, 3)
    out = render_targets(kp, "openpose_coco18", 368, t)
    assert set(out) == {"heatmaps", "heat_mask", "pafs", "paf_mask"}
    np.testing.assert_allclose(out["heatmaps"], R.heatmaps_ref(kp, (46, 46), merge="sum_clip",
                                                               mode="cmu"), atol=ATOL)
    r = TargetRenderer("openpose_mpi15", (240, 368), mode="cmu")
    assert r.out_shape == (30, 46) and r.merge == "sum_clip"


def test_validation_errors():
    kp = random_people(71, 2)
    with pytest.raises(ValueError, match="mode"):
        render_heatmaps(kp, (46, 46), mode="caffe")
    with pytest.raises(ValueError, match="merge"):
        render_heatmaps(kp, (46, 46), merge="mean")
    with pytest.raises(ValueError, match=r"\(N, K, 3\)"):
        render_heatmaps(kp[..., :2], (46, 46))
    with pytest.raises(TypeError, match="float32"):
        render_heatmaps(kp, (46, 46), out=np.zeros((19, 46, 46)))
    with pytest.raises(ValueError, match="shape"):
        render_pafs(kp, SK.limb_index, (46, 46), out=np.zeros((38, 46, 45), np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        render_heatmaps(kp, (46, 46), out=np.zeros((19, 46, 92), np.float32)[:, :, ::2])
    with pytest.raises(ValueError, match="limb_index"):
        render_pafs(kp, [[0, 18]], (46, 46))
    with pytest.raises(ValueError, match="sigma"):
        render_heatmaps(kp, (46, 46), sigma=0)
    with pytest.raises(ValueError, match="skeleton"):
        TargetRenderer(SK, 368).render(np.zeros((1, 15, 3), np.float32))
    bad = kp.copy()
    bad[0, 0] = [np.nan, 5, 2]
    with pytest.raises(ValueError, match="non-finite"):
        render_heatmaps(bad, (46, 46))
    with pytest.raises(ValueError, match="non-finite"):
        render_pafs(bad, [[0, 1]], (46, 46))
    bad[0, 0, 2] = 0                          # unlabelled NaNs are fine
    render_heatmaps(bad, (46, 46))
    render_pafs(bad, SK.limb_index, (46, 46))


def test_single_person_and_empty_inputs():
    kp = random_people(81, 1)
    np.testing.assert_array_equal(render_heatmaps(kp[0], (46, 46)), render_heatmaps(kp, (46, 46)))
    empty = np.zeros((0, 18, 3), np.float32)
    hm = render_heatmaps(empty, (46, 46))
    assert not hm[:18].any() and np.all(hm[18] == 1)
    assert not render_pafs(empty, SK.limb_index, (46, 46)).any()


def test_kernels_refuse_shapes_that_would_write_out_of_bounds():
    from mxpose.targets import _maps
    kp = np.zeros((2, 18, 3), np.float32)
    with pytest.raises(ValueError, match="channels"):
        _maps.render_heatmaps(kp, np.zeros((18, 4, 4), np.float32), 8, 7, 0, False, True)
    with pytest.raises(ValueError, match="limb 0"):
        _maps.render_pafs(kp, np.array([[0, 18]], np.int32), np.zeros((2, 4, 4), np.float32),
                          np.zeros((4, 4), np.int32), 8, 1, 0, False)
    with pytest.raises(ValueError, match="scratch"):
        _maps.render_pafs(kp, np.array([[0, 1]], np.int32), np.zeros((2, 4, 4), np.float32),
                          np.zeros((4, 5), np.int32), 8, 1, 0, False)
    with pytest.raises(ValueError, match="cover"):
        _maps.pool_mask(np.zeros((31, 32), np.float32), np.zeros((4, 4), np.float32), 8)


def test_bench_targets_tool(tmp_path, repo_root):
    import json
    import subprocess
    import sys
    tool = f"{repo_root}/tools/bench/bench_targets.py"
    r = subprocess.run([sys.executable, tool, "--help"], capture_output=True, text=True,
                       cwd=repo_root)
    assert r.returncode == 0 and "--json" in r.stdout
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, tool, "--people", "1", "3", "--modes", "centered",
                        "--repeats", "20", "--ref-repeats", "1", "--samples", "2",
                        "--json", str(out)], capture_output=True, text=True, cwd=repo_root)
    assert r.returncode == 0, r.stderr
    assert "cython us" in r.stdout
    doc = json.loads(out.read_text())
    assert [row["people"] for row in doc["results"]] == [1, 3]
    row = doc["results"][0]
    assert row["mode"] == "centered" and row["cython_us"] > 0 and row["ratio"] > 0
    assert row["target_us"] == 30.0 and "met" in row
    # --skeleton body25: 26 heatmaps, 52 PAF channels, its own 10-people target
    r = subprocess.run([sys.executable, tool, "--skeleton", "body25", "--people", "10",
                        "--modes", "cmu", "--repeats", "20", "--ref-repeats", "1",
                        "--samples", "2", "--json", str(out)], capture_output=True,
                       text=True, cwd=repo_root)
    assert r.returncode == 0, r.stderr
    assert "body25 (26 heatmaps, 52 PAF channels)" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["layout"] == "body25" and doc["results"][0]["target_us"] == 60.0
    assert doc["loader_path_us"] > 0 and doc["loader_path_people"] == 10
