"""Decoder tests: compiled kernels == NumPy twin, one peak per plateau, round trips on
synthetic people, and the COCO ceiling (ground-truth maps decoded and scored)."""
import contextlib
import io
import json
import os

import numpy as np
import pytest

from mxpose.decode import (Decoder, assemble, assemble_crowd, cap_peaks, connect_limbs, decode,
                           find_peaks, limb_order, match_limbs, smooth_maps)
from mxpose.skeleton import convert, get_skeleton

import reference_decode as R
from helpers import match_people

OP18 = get_skeleton("openpose_coco18")
MPI15 = get_skeleton("openpose_mpi15")


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _noisy_gt(skel, n, rng, w=320, h=240, stride=8, noise=0.03):
    people = R.synthetic_people(skel, n, w, h, rng, drop_leaves=0.2)
    hm, pf = R.render_maps(people, skel, h // stride, w // stride, stride)
    hm = hm + rng.normal(0, noise, hm.shape).astype(np.float32)
    pf = pf + rng.normal(0, noise, pf.shape).astype(np.float32)
    return hm, pf


def _random_maps(skel, rng, h=14, w=17):
    """Unstructured maps: many peaks, many short accepted limbs, merges and conflicts."""
    hm = rng.random((skel.num_heatmaps, h, w), dtype=np.float32)
    # Quantised values create ties (plateaus) everywhere.
    hm[:, : h // 2] = np.round(hm[:, : h // 2] * 4) / 4
    pf = rng.uniform(-1, 1, (skel.num_pafs, h, w)).astype(np.float32)
    return hm, pf


def _compare_pipeline(hm, pf, skel, stride=8.0, refine="log", sampling="nearest",
                      min_parts=4, min_score=0.4, sigma=3.0):
    K = skel.num_keypoints
    sig = sigma / stride
    pk, cnt = find_peaks(hm, K, 0.1, sig, refine)
    rpk, rcnt = R.find_peaks_ref(hm, K, 0.1, sig, refine)
    np.testing.assert_array_equal(cnt, rcnt)
    np.testing.assert_array_equal(pk[:, 2], rpk[:, 2])
    np.testing.assert_allclose(pk[:, :2], rpk[:, :2], rtol=0, atol=1e-5)
    # The later stages are compared on the SAME peaks, so they are pinned exactly.
    order = limb_order(skel)
    np.testing.assert_array_equal(order, R.limb_order(skel))
    con = connect_limbs(pk, cnt, pf, skel, stride=stride, sampling=sampling)
    rcon = R.connect_limbs_ref(pk, cnt, pf, skel.limb_index, order, stride=stride,
                               sampling=sampling)
    assert con.shape == rcon.shape
    np.testing.assert_array_equal(con[:, :3], rcon[:, :3])
    np.testing.assert_allclose(con[:, 3], rcon[:, 3], rtol=1e-12, atol=0)
    parts, total, count = assemble(con, pk, skel, min_parts, min_score)
    rparts, rtotal, rcount = R.assemble_ref(rcon, pk, skel.limb_index, K,
                                            skel.no_start_limb_index, min_parts, min_score)
    np.testing.assert_array_equal(parts, rparts)
    np.testing.assert_array_equal(count, rcount)
    np.testing.assert_allclose(total, rtotal, rtol=1e-12)
    # And end to end, in both assembly modes.
    for mode in ("cmu", "crowd"):
        people, scores = Decoder(skel, refine=refine, sampling=sampling, min_parts=min_parts,
                                 min_score=min_score, sigma=sigma, assembly=mode)(
                                     hm, pf, stride=stride)
        rpeople, rscores = R.decode_ref(hm, pf, skel, stride=stride, refine=refine,
                                        sampling=sampling, min_parts=min_parts,
                                        min_score=min_score, sigma=sigma, assembly=mode)
        np.testing.assert_allclose(people, rpeople, rtol=0, atol=1e-4)
        np.testing.assert_allclose(scores, rscores, rtol=1e-6)
    return len(con), len(parts)


# ---------------------------------------------------------------------------------------
# kernels == reference
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma_cells", [0.0, 0.2, 0.375, 1.0, 1.5, 3.0, 4.7])
def test_smoothing_taps_follow_the_documented_rule(sigma_cells):
    from mxpose.decode.paf import gaussian_kernel
    got, want = gaussian_kernel(sigma_cells), R.gaussian_kernel(sigma_cells)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("sigma_cells", [0.375, 1.0, 3.0])
def test_smooth_matches_reference_bitwise(sigma_cells):
    rng = np.random.default_rng(1)
    maps = rng.random((3, 13, 29), dtype=np.float32)
    out = smooth_maps(maps, sigma_cells)
    ref = R.smooth_ref(maps, R.gaussian_kernel(sigma_cells))
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("skel", [OP18, MPI15], ids=lambda s: s.name)
@pytest.mark.parametrize("refine,sampling", [("log", "nearest"), ("quadratic", "bilinear"),
                                             ("none", "nearest")])
def test_kernels_match_reference_on_noisy_gt(skel, refine, sampling):
    rng = np.random.default_rng(7)
    for n in (1, 4, 9):
        hm, pf = _noisy_gt(skel, n, rng)
        nconn, npeople = _compare_pipeline(hm, pf, skel, refine=refine, sampling=sampling)
        assert npeople >= 1 and nconn >= npeople


@pytest.mark.parametrize("skel", [OP18, MPI15], ids=lambda s: s.name)
def test_kernels_match_reference_on_random_maps(skel):
    rng = np.random.default_rng(3)
    total_people = 0
    for trial in range(6):
        hm, pf = _random_maps(skel, rng)
        # Low thresholds keep the random fragments, exercising attach/merge/conflict.
        sampling = "nearest" if trial % 2 else "bilinear"
        _, n = _compare_pipeline(hm, pf, skel, sampling=sampling, min_parts=2, min_score=0.0,
                                 sigma=0.0 if trial < 3 else 3.0)
        total_people += n
    assert total_people > 0


def test_peak_capacity_growth():
    # The densest map possible (a checkerboard: h * w / 2 peaks) fits the one pass.
    hm = np.zeros((OP18.num_heatmaps, 40, 40), dtype=np.float32)
    hm[0, ::2, ::2] = 0.5
    hm[0, 1::2, 1::2] = 0.5
    pk, cnt = find_peaks(hm, OP18.num_keypoints, sigma_cells=0)
    assert cnt[0] == 800 and cnt[1:].sum() == 0
    rpk, _ = R.find_peaks_ref(hm, OP18.num_keypoints, sigma_cells=0)
    np.testing.assert_array_equal(pk, rpk)


# ---------------------------------------------------------------------------------------
# plateaus: exactly one peak each
# ---------------------------------------------------------------------------------------
def _one_channel(a):
    a = np.asarray(a, dtype=np.float32)
    return np.stack([a, np.zeros_like(a)])  # one keypoint + background


def _peaks(a, sigma_cells=0.0, refine="log"):
    pk, cnt = find_peaks(_one_channel(a), 1, 0.1, sigma_cells, refine)
    rpk, rcnt = R.find_peaks_ref(_one_channel(a), 1, 0.1, sigma_cells, refine)
    np.testing.assert_array_equal(cnt, rcnt)
    np.testing.assert_allclose(pk, rpk, atol=1e-6)
    return pk


def _bump(h, w, cells, value=1.0, fall=0.5):
    """A plateau of ``value`` on ``cells`` falling off to ``fall`` around it."""
    a = np.zeros((h, w), dtype=np.float32)
    for y, x in cells:
        a[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = np.maximum(
            a[max(0, y - 1):y + 2, max(0, x - 1):x + 2], fall)
    for y, x in cells:
        a[y, x] = value
    return a


@pytest.mark.parametrize("sigma_cells", [0.0, 0.375])
@pytest.mark.parametrize("cells,centre", [
    ([(4, 4), (4, 5)], (4.5, 4.0)),                       # 2 cells, horizontal
    ([(4, 4), (5, 4)], (4.0, 4.5)),                       # 2 cells, vertical
    ([(4, 4), (4, 5), (5, 4), (5, 5)], (4.5, 4.5)),       # 2x2
    ([(3, 4), (4, 3), (4, 4)], (11 / 3, 11 / 3)),         # L shape (raster rule fails)
    ([(4, 2), (4, 3), (4, 4), (4, 5), (4, 6)], (4.0, 4.0)),  # long ridge
])
def test_one_peak_per_plateau(cells, centre, sigma_cells):
    pk = _peaks(_bump(10, 10, cells), sigma_cells)
    assert len(pk) == 1
    if sigma_cells == 0:
        np.testing.assert_allclose(pk[0, :2], centre, atol=1e-6)
    else:
        np.testing.assert_allclose(pk[0, :2], centre, atol=0.5)


def test_plateau_next_to_higher_cell_is_not_a_peak():
    a = _bump(10, 10, [(4, 4), (4, 5)])
    a[4, 6] = 1.5  # the plateau is a shoulder of this cell
    pk = _peaks(a)
    assert len(pk) == 1
    assert np.isclose(pk[0, 0], 6.0, atol=0.5) and np.isclose(pk[0, 1], 4.0)


def test_flat_map_is_one_peak_and_zero_map_none():
    assert len(_peaks(np.full((6, 9), 0.7))) == 1
    np.testing.assert_allclose(_peaks(np.full((6, 9), 0.7))[0, :2], (4.0, 2.5))
    assert len(_peaks(np.zeros((6, 9)))) == 0


@pytest.mark.parametrize("sigma", [0.0, 3.0])
def test_keypoint_halfway_between_cells_and_on_a_centre(sigma):
    # With the centred grid at stride 8, x = 8g + 7.5 lies half-way between two cell
    # centres (equal values: a 2-cell plateau), x = 8g + 3.5 exactly on a centre.
    stride = 8
    for x, y in [(8 * 5 + 7.5, 8 * 4 + 3.5), (8 * 5 + 7.5, 8 * 4 + 7.5), (8 * 5 + 3.5, 37.0)]:
        people = np.zeros((1, OP18.num_keypoints, 3), dtype=np.float32)
        people[0, 0] = (x, y, 2)
        hm = R.render_heatmaps(people, OP18.num_keypoints, 12, 14, stride)
        pk, cnt = find_peaks(hm, OP18.num_keypoints, 0.1, sigma / stride)
        assert cnt[0] == 1 and cnt.sum() == 1
        np.testing.assert_allclose(pk[0, :2] * stride + 3.5, (x, y), atol=0.05)


def test_clipped_overlapping_gaussians_give_one_peak():
    # CMU renders by summing and clipping at 1: two people's nearby keypoints make a
    # flat top of many cells. One peak, near the middle of the two.
    people = np.zeros((3, OP18.num_keypoints, 3), dtype=np.float32)
    people[:, 0] = [(58.0, 50.0, 2), (66.0, 50.0, 2), (62.0, 56.0, 2)]
    hm = R.render_heatmaps(people, OP18.num_keypoints, 14, 16, 8, merge="sum_clip")
    assert (hm[0] == 1.0).sum() >= 5
    for sig in (0.0, 0.375):
        pk, cnt = find_peaks(hm, OP18.num_keypoints, 0.1, sig)
        rpk, rcnt = R.find_peaks_ref(hm, OP18.num_keypoints, 0.1, sig)
        assert cnt[0] == 1 and rcnt[0] == 1
        np.testing.assert_allclose(pk, rpk, atol=1e-6)
        np.testing.assert_allclose(pk[0, :2] * 8 + 3.5, (62.0, 52.0), atol=4.0)


def test_edge_peak_is_refined():
    # Keypoint just inside the left edge: the peak cell is on the border, where the
    # other axis lends its curvature.
    people = np.zeros((1, OP18.num_keypoints, 3), dtype=np.float32)
    people[0, 0] = (1.0, 42.3, 2)
    hm = R.render_heatmaps(people, OP18.num_keypoints, 12, 14, 8)
    pk, cnt = find_peaks(hm, OP18.num_keypoints, 0.1, 0.0)
    np.testing.assert_allclose(pk[0, :2] * 8 + 3.5, (1.0, 42.3), atol=0.01)
    rpk, _ = R.find_peaks_ref(hm, OP18.num_keypoints, 0.1, 0.0)
    np.testing.assert_allclose(pk, rpk, atol=1e-6)


# ---------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("skel", [OP18, MPI15], ids=lambda s: s.name)
@pytest.mark.parametrize("stride", [8, 4])
def test_round_trip_synthetic_people(skel, stride):
    rng = np.random.default_rng(11)
    dec = Decoder(skel)
    worst = 0.0
    for n in (1, 3, 6, 10):
        people = R.synthetic_people(skel, n, 640, 480, rng, drop_leaves=0.25)
        hm, pf = R.render_maps(people, skel, 480 // stride, 640 // stride, stride)
        out, scores = dec(hm, pf, stride=stride)
        assert out.shape == (n, skel.num_keypoints, 3) and scores.shape == (n,)
        match_people(people, out, tol=stride)
        # Sub-cell refinement makes it far better than a stride: measure it.
        for p in people:
            lab = p[:, 2] > 0
            j = np.argmin(np.abs(out[:, lab, :2] - p[None, lab, :2]).sum((1, 2)))
            worst = max(worst, np.abs(out[j, lab, :2] - p[lab, :2]).max())
    assert worst < 0.1 * stride


def test_upsample_mode_round_trip():
    rng = np.random.default_rng(5)
    people = R.synthetic_people(OP18, 4, 320, 240, rng)
    hm, pf = R.render_maps(people, OP18, 30, 40, 8)
    out, _ = Decoder(OP18, upsample=4)(hm, pf, stride=8)
    match_people(people, out, tol=8)


def test_decode_convenience_equals_decoder_and_empty_maps():
    rng = np.random.default_rng(2)
    people = R.synthetic_people(OP18, 3, 320, 240, rng)
    hm, pf = R.render_maps(people, OP18, 30, 40, 8)
    a, sa = decode(hm, pf, "openpose_coco18", stride=8)
    b, sb = Decoder(OP18)(hm, pf, stride=8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
    out, sc, info = Decoder(OP18)(np.zeros_like(hm), np.zeros_like(pf), return_info=True)
    assert out.shape == (0, 18, 3) and sc.shape == (0,) and len(info.peaks) == 0


def test_thresholds_are_parameters():
    rng = np.random.default_rng(4)
    people = R.synthetic_people(OP18, 2, 320, 240, rng)
    hm, pf = R.render_maps(people, OP18, 30, 40, 8)
    assert len(Decoder(OP18)(hm, pf)[0]) == 2
    assert len(Decoder(OP18, min_parts=19)(hm, pf)[0]) == 0
    assert len(Decoder(OP18, thre1=1.01)(hm, pf)[0]) == 0
    assert len(Decoder(OP18, thre2=1.01)(hm, pf)[0]) == 0
    assert len(Decoder(OP18, min_score=2.5)(hm, pf)[0]) == 0


def test_input_validation():
    hm = np.zeros((19, 10, 10), np.float32)
    pf = np.zeros((38, 10, 10), np.float32)
    with pytest.raises(ValueError, match="needs 28"):
        Decoder(MPI15)(hm[:16], pf)
    with pytest.raises(ValueError, match="differ in size"):
        Decoder(OP18)(hm, pf[:, :9])
    with pytest.raises(ValueError, match="refine"):
        Decoder(OP18, refine="cubic")


def test_limb_order_is_a_growing_tree():
    for skel in (OP18, MPI15):
        order = limb_order(skel)
        assert sorted(order.tolist()) == list(range(skel.num_limbs))
        nostart = set(skel.no_start_limb_index.tolist())
        assert set(order[len(order) - len(nostart):].tolist()) == nostart
        seen = set(skel.limb_index[order[0]].tolist())
        for l in order[1:]:
            a, b = skel.limb_index[l]
            assert a in seen or b in seen
            seen.update((int(a), int(b)))


def test_no_start_limb_never_starts_a_person():
    # Only ear and shoulder labelled: their limb is a no-start limb, so nobody appears.
    people = np.zeros((1, 18, 3), np.float32)
    for name, xy in (("r_shoulder", (80, 80)), ("r_ear", (90, 40))):
        people[0, OP18.index(name)] = (*xy, 2)
    hm, pf = R.render_maps(people, OP18, 20, 20, 8)
    _, _, info = Decoder(OP18, min_parts=1, min_score=0)(hm, pf, return_info=True)
    assert len(info.connections) == 1 and len(info.parts) == 0


# ---------------------------------------------------------------------------------------
# ceiling: ground-truth maps of real COCO annotations, decoded and scored by COCOeval
# ---------------------------------------------------------------------------------------
def _coco_ap(coco_sample, decoder, noise=0.0, blur=0.0, seed=0):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann = os.path.join(coco_sample, "test_coco.json")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann)
    rng = np.random.default_rng(seed)
    results = []
    for img_id in gt.getImgIds():
        info = gt.loadImgs(img_id)[0]
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=img_id))
                if a["num_keypoints"] > 0 and not a["iscrowd"]]
        kp = np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3)
        people = convert(kp, "coco", "openpose_coco18")
        h, w = -(-info["height"] // 8), -(-info["width"] // 8)
        hm, pf = R.render_maps(people, OP18, h, w, 8)
        if blur:
            import cv2
            hm = np.stack([cv2.GaussianBlur(c, (0, 0), blur) for c in hm])
            pf = np.stack([cv2.GaussianBlur(c, (0, 0), blur) for c in pf])
        if noise:
            hm = hm + rng.normal(0, noise, hm.shape).astype(np.float32)
            pf = pf + rng.normal(0, noise, pf.shape).astype(np.float32)
        out, scores = decoder(hm, pf, stride=8)
        for p, s in zip(convert(out, "openpose_coco18", "coco"), scores):
            results.append({"image_id": img_id, "category_id": 1,
                            "keypoints": p.reshape(-1).tolist(), "score": float(s)})
    assert results, "nothing decoded"
    with contextlib.redirect_stdout(io.StringIO()):
        E = COCOeval(gt, gt.loadRes(json.loads(json.dumps(results))), "keypoints")
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E.stats[0]


@pytest.mark.parametrize("kw,floor", [({}, 0.99), ({"assembly": "cmu"}, 0.99),
                                      ({"sampling": "nearest"}, 0.98),
                                      ({"refine": "quadratic"}, 0.98), ({"upsample": 8}, 0.98)],
                         ids=["stride8", "stride8-cmu", "stride8-nearest", "stride8-quadratic",
                              "upsample8"])
def test_coco_ceiling(coco_sample, kw, floor):
    # Measured: 0.991 in every mode listed (crowd and cmu assembly alike), 0.990
    # upsampled (the one miss is a wrist annotated without its elbow, which no limb can
    # attach). No refinement: 0.869.
    ap = _coco_ap(coco_sample, Decoder(OP18, **kw))
    print(f"native-resolution decoder ceiling AP {ap:.3f} {kw}")   # shown with pytest -s
    assert ap >= floor, f"ceiling AP {ap:.4f} < {floor} with {kw}"


@pytest.mark.parametrize("noise,blur,kw,floor", [
    (0.02, 0.0, {}, 0.98),
    (0.0, 0.5, {}, 0.98),
    (0.02, 0.5, {}, 0.98),
    (0.05, 0.7, {"sigma": 5.0}, 0.95),
], ids=["noise", "blur", "noise+blur", "heavy-sigma5"])
def test_coco_ceiling_noisy_maps(coco_sample, noise, blur, kw, floor):
    # Measured (seed 0): 0.990, 0.991, 0.990, 0.990 (sigma 3 on the heavy case: 0.918).
    ap = _coco_ap(coco_sample, Decoder(OP18, **kw), noise=noise, blur=blur)
    assert ap >= floor, f"AP {ap:.4f} < {floor} on maps with noise {noise}, blur {blur}"


# ---------------------------------------------------------------------------------------
# crowd assembly and the peak cap
# ---------------------------------------------------------------------------------------
def _crowd_stages(hm, pf, skel, share=True, max_peaks=64, stride=8.0):
    """Every stage of the crowd mode against its twin on the same inputs; returns the
    number of candidates, of matched rows, and of peaks shared by two people."""
    K = skel.num_keypoints
    pk, cnt = find_peaks(hm, K, 0.1, 3.0 / stride, "log", max_peaks=max_peaks)
    rpk, rcnt = R.cap_peaks_ref(*R.find_peaks_ref(hm, K, 0.1, 3.0 / stride, "log"), max_peaks)
    np.testing.assert_array_equal(cnt, rcnt)
    np.testing.assert_allclose(pk, rpk, rtol=0, atol=1e-5)
    cand = connect_limbs(pk, cnt, pf, skel, stride=stride, match=False)
    rcand = R.connect_limbs_ref(pk, cnt, pf, skel.limb_index, limb_order(skel), stride=stride,
                                match=False)
    np.testing.assert_array_equal(cand[:, :3], rcand[:, :3])
    np.testing.assert_allclose(cand[:, 3], rcand[:, 3], rtol=1e-12, atol=0)
    matched = match_limbs(cand, len(pk))
    np.testing.assert_array_equal(matched, R.match_limbs_ref(cand))
    init = assemble(matched, pk, skel, 0, -np.inf)
    parts, total, count = assemble_crowd(cand, pk, skel, 4, 0.4, init=init[:2], share=share)
    rparts, rtotal, rcount = R.assemble_crowd_ref(cand, pk, skel.limb_index, K,
                                                  skel.no_start_limb_index, 4, 0.4,
                                                  init=init[:2], share=share)
    np.testing.assert_array_equal(parts, rparts)
    np.testing.assert_array_equal(count, rcount)
    np.testing.assert_allclose(total, rtotal, rtol=1e-12)
    ids = parts[parts >= 0]
    return len(cand), len(matched), len(ids) - len(np.unique(ids))


@pytest.mark.parametrize("skel", [OP18, MPI15], ids=lambda s: s.name)
@pytest.mark.parametrize("share", [True, False])
def test_crowd_kernels_match_reference(skel, share):
    rng = np.random.default_rng(7)
    shared = 0
    for _ in range(4):
        nc, nm, sh = _crowd_stages(*_random_maps(skel, rng), skel, share=share)
        assert nc > nm > 0        # matching drops candidates: the pass sees more
        shared += sh
        _crowd_stages(*_noisy_gt(skel, 6, rng), skel, share=share)
    # sharing happens on random maps, and only when asked for
    assert (shared > 0) == share


def test_crowd_kernels_match_reference_at_the_peak_cap():
    rng = np.random.default_rng(3)
    hm, pf = _random_maps(OP18, rng, h=24, w=30)
    _, cnt = find_peaks(hm, OP18.num_keypoints, 0.1, 0.375)
    assert cnt.max() > 5
    _crowd_stages(hm, pf, OP18, max_peaks=5)
    people, scores = Decoder(OP18, max_peaks=5)(hm, pf)
    rpeople, rscores = R.decode_ref(hm, pf, OP18, max_peaks=5)
    np.testing.assert_allclose(people, rpeople, rtol=0, atol=1e-4)


def test_cap_peaks_keeps_the_highest_in_raster_order():
    pk = np.array([[0, 0, .5], [1, 0, .9], [2, 0, .5], [3, 0, .7], [0, 1, .3], [5, 5, .2],
                   [6, 6, .2], [7, 7, .2]], np.float32)
    cnt = np.array([5, 3], np.int32)
    out, oc = cap_peaks(pk, cnt, 2)
    np.testing.assert_array_equal(oc, [2, 2])
    # keypoint 0: 0.9 and 0.7, in list order; keypoint 1: a three-way tie keeps the first two
    np.testing.assert_array_equal(out, pk[[1, 3, 5, 6]])
    assert cap_peaks(pk, cnt, 0)[0] is pk and cap_peaks(pk, cnt, 5)[0] is pk
    r, rc = R.cap_peaks_ref(pk, cnt, 2)
    np.testing.assert_array_equal(out, r)


def _two_people(dx):
    """Two template people ``dx`` px apart, 240 px tall, in a 320x240 image (COCO-18)."""
    tmpl = np.array([R._TEMPLATE[k] for k in OP18.keypoints], np.float32) * 1.2
    people = np.zeros((2, OP18.num_keypoints, 3), np.float32)
    for i, x in enumerate((130.0, 130.0 + dx)):
        people[i, :, :2] = tmpl + (x, 125.0)
        people[i, :, 2] = 2
    return people


def _found(out, person, tol=2.0):
    """Keypoints of ``person`` that the decoded person matching it best has within tol."""
    if len(out) == 0:
        return 0
    d = np.hypot(out[:, :, 0] - person[:, 0], out[:, :, 1] - person[:, 1])
    ok = (d < tol) & (out[:, :, 2] > 0)
    return int(ok.sum(1).max())


def test_crowd_two_people_share_a_keypoint():
    # The right person's right arm reaches across so that both right wrists are at the
    # same spot: the maps hold ONE wrist peak for two people. CMU gives it to one of
    # them; the crowd mode gives it to both.
    people = _two_people(60.0)
    rw, re = OP18.index("r_wrist"), OP18.index("r_elbow")
    people[1, rw, :2] = people[0, rw, :2]
    people[1, re, :2] = (people[1, OP18.index("r_shoulder"), :2] + people[0, rw, :2]) / 2
    hm, pf = R.render_maps(people, OP18, 30, 40, 8)
    _, cnt = find_peaks(hm, OP18.num_keypoints)
    assert cnt[rw] == 1
    crowd, _ = Decoder(OP18)(hm, pf)
    cmu, _ = Decoder(OP18, assembly="cmu")(hm, pf)
    assert len(crowd) == len(cmu) == 2
    assert [_found(crowd, p) for p in people] == [18, 18]
    assert sorted(_found(cmu, p) for p in people) == [17, 18]


def test_crowd_matching_keeps_both_people_whole():
    # Hand-built candidates of two people side by side: necks 0, 1; right hips 2, 3;
    # right knees 4, 5. The cross pair neck 1 - hip 2 scores a hair above both true
    # neck-hip pairs (side-by-side limbs share their PAF), and neck 0 - hip 3 is no
    # candidate. CMU's greedy matching keeps the cross pair, so person 0 loses its leg
    # and person 1's own leg is cut off: three fragments. The optimal matching keeps
    # both true pairs (total 1.95 against 0.99) and the people come out whole.
    neck_hip, hip_knee = 0, 1
    assert tuple(OP18.limb_index[neck_hip]) == (1, 8) and tuple(OP18.limb_index[hip_knee]) == (8, 9)
    peaks = np.array([[10, 5, 1], [12, 5, 1], [10, 10, 1], [12, 10, 1], [10, 15, 1],
                      [12, 15, 1]], np.float32)
    cand = np.array([[neck_hip, 1, 2, .99], [neck_hip, 1, 3, .98], [neck_hip, 0, 2, .97],
                     [hip_knee, 2, 4, .95], [hip_knee, 3, 5, .94]])
    greedy = cand[[0, 3, 4]]            # what the greedy rule keeps, by hand
    parts, _, _ = assemble(greedy, peaks, OP18, min_parts=1, min_score=0)
    assert sorted(tuple(sorted(p[p >= 0])) for p in parts) == [(1, 2, 4), (3, 5)]
    matched = match_limbs(cand, len(peaks))
    np.testing.assert_array_equal(matched[:, :3], [[0, 1, 3], [0, 0, 2], [1, 2, 4], [1, 3, 5]])
    init = assemble(matched, peaks, OP18, 0, -np.inf)
    parts, _, _ = assemble_crowd(cand, peaks, OP18, min_parts=1, min_score=0, init=init[:2])
    assert sorted(tuple(sorted(p[p >= 0])) for p in parts) == [(0, 2, 4), (1, 3, 5)]


def test_crowd_mode_on_synthetic_crowds_beats_cmu(repo_root):
    # The bench tool's ceiling on a few crowd images: the crowd mode must not lose to
    # CMU's rule, clean or noisy (40 images: 0.980 vs 0.954 clean, 0.910 vs 0.862 noisy).
    bench = _tool_main(repo_root, "bench/bench_ceiling.py", "bench_ceiling", module=True)
    cases, gt = bench.crowd_cases(6, seed=1)
    aps = {m: [bench.ceiling_ap(cases, gt, Decoder(OP18, assembly=m), None, nz, bl)
               for nz, bl in ((0, 0), (0.03, 0.5))] for m in ("cmu", "crowd")}
    assert aps["crowd"][0] >= 0.95, aps
    assert aps["crowd"][0] >= aps["cmu"][0] and aps["crowd"][1] >= aps["cmu"][1] - 0.005, aps


def test_noise_maps_cost_and_people_are_bounded():
    # Uniform-noise maps (an untrained network): ~930 peaks per keypoint. The cap keeps
    # the 64 highest per keypoint, which bounds the limb candidates (19 * 64^2 pairs),
    # hence the time (~13 ms CPU instead of 2.1 s) and the people.
    r = np.random.default_rng(0)
    h = r.uniform(0, 1, (19, 60, 80)).astype("f4")
    p = r.uniform(-1, 1, (38, 60, 80)).astype("f4")
    _, raw_counts = find_peaks(h, 18)
    assert raw_counts.min() > 500
    for mode in ("crowd", "cmu"):
        dec = Decoder(OP18, assembly=mode)
        assert dec.max_peaks == 64
        people, _, info = dec(h, p, return_info=True)
        assert info.counts.max() == 64
        assert len(people) <= 64        # measured 20 (crowd), 14 (cmu); 1,121 uncapped
    few, _, info = Decoder(OP18, max_peaks=4)(h, p, return_info=True)
    assert info.counts.max() == 4 and len(few) <= 4 * 18 // 4


def test_decoder_params_come_from_the_config_and_reach_the_decoder():
    import inspect

    from mxpose.config import load_config
    from mxpose.infer import Predictor, decode_params_from_config
    from test_infer import GroundTruthEngine
    # every Decoder keyword has a config key
    keys = set(inspect.signature(Decoder).parameters) - {"skeleton"}
    cfg = load_config(overrides=["test.max_peaks=1", "test.assembly=cmu"])
    params = decode_params_from_config(cfg)
    assert set(params) == keys
    # and the Predictor decodes with them: a cap of one peak per keypoint leaves one
    # person of two; a bad mode name is refused by the decoder itself
    people = _two_people(120.0)
    eng = GroundTruthEngine(people, OP18, (240, 320), (1.0,), boxsize=240)
    out, _ = Predictor(eng, OP18, boxsize=240, engine="numpy", decode_params=params)(
        np.zeros((240, 320, 3), np.uint8))
    assert len(out) == 1
    eng.calls = 0
    out, _ = Predictor(eng, OP18, boxsize=240, engine="numpy",
                       decode_params=decode_params_from_config(load_config()))(
        np.zeros((240, 320, 3), np.uint8))
    assert len(out) == 2
    bad = decode_params_from_config(load_config(overrides=["test.assembly=nope"]))
    with pytest.raises(ValueError, match="assembly must be one of"):
        Predictor(eng, OP18, boxsize=240, engine="numpy", decode_params=bad)(
            np.zeros((240, 320, 3), np.uint8))


# ---------------------------------------------------------------------------------------
# tool
# ---------------------------------------------------------------------------------------
def _tool_main(repo_root, rel, name, module=False):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(repo_root, "tools", rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod if module else mod.main


def _bench_main(repo_root):
    return _tool_main(repo_root, "bench/bench_decode.py", "bench_decode")


def test_bench_decode_tool(repo_root, tmp_path, capsys):
    main = _bench_main(repo_root)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = tmp_path / "bench.json"
    assert main(["--people", "1", "3", "--images", "1", "--repeat", "1", "--ref-repeat", "1",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["people"] for r in doc["rows"]] == [1, 3]
    assert all(r["outputs_agree"] and r["decoded_mean"] == r["people"] for r in doc["rows"])
    assert "cython ms" in capsys.readouterr().out
    assert main(["--width", "100"]) == 2


def test_bench_ceiling_tool(repo_root, tmp_path, capsys, coco_sample):
    main = _tool_main(repo_root, "bench/bench_ceiling.py", "bench_ceiling")
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = tmp_path / "ceiling.json"
    assert main(["--modes", "cmu", "crowd:32", "--coco", coco_sample, "--crowd-images", "2",
                 "--people", "1", "--images", "1", "--repeat", "1", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["mode"] for r in doc["rows"]] == ["cmu", "crowd:32"]
    row = doc["rows"][1]
    assert row["coco/img/clean"] >= 0.99 and 0 < row["crowd/368/noisy"] <= 1
    assert row["ms@1"] > 0 and row["people@noise"] <= 32
    assert "| crowd:32 |" in capsys.readouterr().out
    assert main(["--modes", "greedy"]) == 2
