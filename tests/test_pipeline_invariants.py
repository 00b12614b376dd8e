"""Invariants of the whole sample pipeline (DB -> decode -> augmentation -> targets).

Flip symmetry, the recorded affine, ignore masks on the real COCO sample, heatmap peaks
on the synthetic DB, sample counts, and reduced-size JPEG decoding.
"""
import json
import os

import cv2
import numpy as np
import pytest

from mxpose.config import default_config
from mxpose.data import dataset as dataset_mod
from mxpose.data import transforms as T
from mxpose.data.coco import ingest_coco
from mxpose.data.dataset import PoseDataset
from mxpose.data.image import decode_image
from mxpose.data.store import PoseDB
from mxpose.data.synthetic import make_synthetic_db
from mxpose.skeleton import convert, get_skeleton
from mxpose.targets import TargetRenderer

SKEL = get_skeleton("openpose_coco18")


def _coco_cfg():
    cfg = default_config()
    cfg.data.skeleton = SKEL.name
    return cfg


def _syn_cfg():
    cfg = default_config()
    cfg.data.skeleton = SKEL.name
    cfg.aug.input_size = 160
    cfg.aug.scale_ref = 160.0
    cfg.aug.min_keypoints = 3
    cfg.aug.min_area = 256.0
    cfg.targets.sigma = 4.0
    return cfg


@pytest.fixture(scope="module")
def coco_db(coco_sample, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("coco") / "coco.db")
    ingest_coco(os.path.join(coco_sample, "test_coco.json"), coco_sample, path, split="train",
                progress=False)
    return path


@pytest.fixture(scope="module")
def coco_json(coco_sample):
    with open(os.path.join(coco_sample, "test_coco.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def syn_db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("syn") / "syn.db")
    make_synthetic_db(path, num_images=8, num_val=0, seed=5, progress=False)
    return path


def flip_maps(heat, paf, skel=SKEL):
    """Mirror a sample's maps: x reversed, left/right channels swapped, PAF x negated."""
    hi = skel.heatmap_flip_index()
    pi, sign = skel.paf_flip_index()
    return heat[hi][..., ::-1], sign[:, None, None] * paf[pi][..., ::-1]


def _random_people(rng, n, size):
    kp = np.zeros((n, SKEL.num_keypoints, 3), np.float32)
    kp[..., :2] = rng.uniform(-20, size + 20, (n, SKEL.num_keypoints, 2))
    kp[..., 2] = rng.integers(0, 3, (n, SKEL.num_keypoints))
    kp[kp[..., 2] == 0] = 0
    return kp


def _original_keypoints(ds, j):
    """DB keypoints of sample j in the network layout, crowds removed (as the dataset)."""
    img_id = int(ds.index[j, 0])
    people = PoseDB(ds.db.path).people(img_id)
    kp = convert(people["keypoints"], ds.src_skeleton, ds.skeleton)
    return kp[~people["is_crowd"]]


# -- flips ----------------------------------------------------------------------------------
def test_flip_twice_is_identity():
    rng = np.random.default_rng(0)
    kp = _random_people(rng, 4, 368)
    np.testing.assert_allclose(SKEL.flip_keypoints(SKEL.flip_keypoints(kp, 368), 368), kp,
                               atol=1e-4)
    r = TargetRenderer(SKEL, 368)
    heat, paf = (a.copy() for a in r.render_maps(kp))
    h2, p2 = flip_maps(*flip_maps(heat, paf))
    np.testing.assert_array_equal(h2, heat)
    np.testing.assert_array_equal(p2, paf)


def test_flip_then_render_equals_render_then_flip():
    rng = np.random.default_rng(1)
    r = TargetRenderer(SKEL, 368)       # centred mode, input width = stride * W
    for n in (1, 3, 8):
        kp = _random_people(rng, n, 368)
        heat, paf = (a.copy() for a in r.render_maps(kp))
        fh, fp = (a.copy() for a in r.render_maps(SKEL.flip_keypoints(kp, 368)))
        eh, ep = flip_maps(heat, paf)
        np.testing.assert_allclose(fh, eh, atol=1e-5)
        np.testing.assert_allclose(fp, ep, atol=1e-5)
        assert heat[:-1].max() > 0.5 and np.abs(paf).max() > 0.5


def test_flipped_sample_is_the_mirrored_sample(coco_db):
    """The dataset with flip_prob 1 and 0 and the same seed draws the same affine but
    the flip: crop, heatmaps, PAFs and masks must be mirror images (channels swapped)."""
    cfgs = []
    for p in (0.0, 1.0):
        cfg = _coco_cfg()
        cfg.aug.flip_prob = p
        cfgs.append(cfg)
    plain = PoseDataset(coco_db, "train", config=cfgs[0], return_meta=True)
    flip = PoseDataset(coco_db, "train", config=cfgs[1], return_meta=True)
    checked_mask = 0
    for j in range(len(plain)):
        a, _ = plain.get(j, seed=100 + j)
        b, _ = flip.get(j, seed=100 + j)
        assert not a[5]["flip"] and b[5]["flip"]
        ia, ib = T.denormalize_image(a[0]), T.denormalize_image(b[0])
        assert np.abs(ia[:, ::-1].astype(int) - ib).mean() < 1.0
        eh, ep = flip_maps(a[1], a[3])
        np.testing.assert_allclose(b[1], eh, atol=1e-4)
        np.testing.assert_allclose(b[3], ep, atol=1e-4)
        # masks: the mirrored warp samples the same points up to OpenCV's 1/32 px grid
        # (one (1, H, W) mask shared by heatmaps and PAFs: no channels to swap)
        assert a[2].shape[0] == 1 and b[4] is b[2]
        np.testing.assert_allclose(b[2], a[2][..., ::-1], atol=0.05)
        checked_mask += bool((a[2] < 1).any())
    assert checked_mask >= 1


# -- the recorded affine --------------------------------------------------------------------
@pytest.mark.parametrize("which", ["coco", "synthetic"])
def test_recorded_affine_maps_keypoints_back(which, request):
    if which == "coco":
        db, cfg = request.getfixturevalue("coco_db"), _coco_cfg()
    else:
        db, cfg = request.getfixturevalue("syn_db"), _syn_cfg()
    ds = PoseDataset(db, "train", config=cfg, return_meta=True)
    flips = 0
    for j in range(min(len(ds), 16)):
        for seed in (j, 1000 + j):
            meta = ds.get(j, seed)[0][5]
            orig = _original_keypoints(ds, j)
            back = T.apply_affine(T.invert_affine(np.array(meta["affine"])), meta["keypoints"])
            if meta["flip"]:
                back = back[:, SKEL.flip_index]
                flips += 1
            lab = orig[..., 2] > 0
            assert np.array_equal(back[..., 2], orig[..., 2])
            assert np.abs(back[lab, :2] - orig[lab, :2]).max() < 0.01
    assert flips > 0


# -- ignore masks on the real COCO sample --------------------------------------------------
def _poly_area_centroid(poly):
    x, y = poly[:, 0], poly[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2
    cx = ((x + xn) * cross).sum() / (6 * area)
    cy = ((y + yn) * cross).sum() / (6 * area)
    return abs(area), np.array([cx, cy])


def test_ignore_masks_cover_the_unlabelled_people(coco_db, coco_json):
    """Every sample of an image with unlabelled people (num_keypoints == 0) ignores, in
    both loss masks, an area equal to the warped outline of those people, centred on
    it, and supervises everything well away from it."""
    names = {im["id"]: im["file_name"] for im in coco_json["images"]}
    polys = {}
    for a in coco_json["annotations"]:
        if a["num_keypoints"] == 0 and not a["iscrowd"]:
            polys.setdefault(names[a["image_id"]], []).append(
                np.array(a["segmentation"][0], np.float64).reshape(-1, 2))
    assert sorted(polys) == ["000000040083.jpg", "000000196141.jpg"]
    cfg = _coco_cfg()
    ds = PoseDataset(coco_db, "train", config=cfg, return_meta=True)
    S, s = cfg.aug.input_size, cfg.targets.stride
    H = S // s
    g = np.arange(H) * s + (s - 1) / 2
    checked = 0
    for j in range(len(ds)):
        for seed in range(6):
            (img, heat, hmask, paf, pmask, meta), _ = ds.get(j, seed)
            if meta["file_name"] not in polys:
                assert (hmask == 1).all() and (pmask == 1).all()
                continue
            (poly,) = polys[meta["file_name"]]
            M = np.array(meta["affine"])
            q = poly @ M[:, :2].T + M[:, 2]
            mask = hmask[0]
            assert np.array_equal(hmask, np.broadcast_to(mask, hmask.shape))
            assert np.array_equal(pmask, np.broadcast_to(mask, pmask.shape))
            lo, hi = q.min(0), q.max(0)
            far = ((g[None, :] < lo[0] - 2 * s) | (g[None, :] > hi[0] + 2 * s)
                   | (g[:, None] < lo[1] - 2 * s) | (g[:, None] > hi[1] + 2 * s))
            assert (mask[far] == 1).all()
            if lo.min() < s or hi.max() > S - 1 - s:
                continue                      # partly outside the crop: no area check
            area, cen = _poly_area_centroid(q)
            ign = (1 - mask).astype(np.float64)
            got_area = ign.sum() * s * s
            got_cen = np.array([(ign.sum(0) * g).sum(), (ign.sum(1) * g).sum()]) / ign.sum()
            # (within COCO's half-pixel polygon convention and the bilinear warp's blur)
            assert abs(got_area - area) < 0.1 * area + 16, (meta["file_name"], seed)
            assert np.hypot(*(got_cen - cen)) < 1.5
            checked += 1
    assert checked >= 6


# -- heatmap peaks on the synthetic DB ------------------------------------------------------
def test_synthetic_heatmap_peaks_at_the_augmented_keypoints(syn_db):
    cfg = _syn_cfg()
    ds = PoseDataset(syn_db, "train", config=cfg, return_meta=True)
    S, s, sigma = cfg.aug.input_size, cfg.targets.stride, cfg.targets.sigma
    H = S // s
    g = np.arange(H) * s + (s - 1) / 2
    peaks = 0
    for j in range(len(ds)):
        (img, heat, hmask, paf, pmask, meta), _ = ds.get(j, 7 * j)
        # the keypoints the targets come from are the DB's, through the recorded affine
        kp = T.apply_affine(np.array(meta["affine"]), _original_keypoints(ds, j))
        if meta["flip"]:
            kp = kp[:, SKEL.flip_index]
        np.testing.assert_allclose(meta["keypoints"], kp, atol=1e-3)
        for k in range(SKEL.num_keypoints):
            pts = kp[kp[:, k, 2] > 0, k, :2]
            inside = pts[(pts >= 0).all(1) & (pts <= S - 1).all(1)]
            for x, y in inside:      # the nearest cell holds at least this point's Gaussian
                gx = int(np.clip(np.round((x - (s - 1) / 2) / s), 0, H - 1))
                gy = int(np.clip(np.round((y - (s - 1) / 2) / s), 0, H - 1))
                d2 = (g[gx] - x) ** 2 + (g[gy] - y) ** 2
                assert heat[k, gy, gx] >= np.exp(-d2 / (2 * sigma ** 2)) - 1e-5
            # and every strong local maximum of the channel is at one of its keypoints
            ch = heat[k]
            dil = cv2.dilate(ch, np.ones((3, 3), np.uint8))
            for gy, gx in zip(*np.nonzero((ch == dil) & (ch > 0.5))):
                assert len(pts), (j, k)
                dist = np.hypot(pts[:, 0] - g[gx], pts[:, 1] - g[gy]).min()
                assert dist <= 1.5 * s, (j, k, dist)
                peaks += 1
    assert peaks > 50


# -- sample counts -------------------------------------------------------------------------
def _cmu_main_people(anns, min_kp=5, min_area=32 * 32, min_dist=0.3):
    """Independent CMU main-person filter over the COCO JSON annotations of one image."""
    chosen = []
    for a in anns:
        x, y, w, h = a["bbox"]
        c = np.array([x + w / 2, y + h / 2])
        if a["iscrowd"] or a["num_keypoints"] < min_kp or a["area"] < min_area:
            continue
        if any(np.hypot(*(c - o)) < min_dist * max(w, h) for o in chosen):
            continue
        chosen.append(c)
    return len(chosen)


def test_per_person_and_per_image_sample_counts(coco_db, coco_json):
    by_image = {}
    for a in coco_json["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    expect = sum(_cmu_main_people(v) for v in by_image.values())
    per_person = PoseDataset(coco_db, "train", config=_coco_cfg(), sample_per="person")
    per_image = PoseDataset(coco_db, "train", config=_coco_cfg(), sample_per="image")
    assert len(per_person) == expect == 12
    assert len(per_image) == len(coco_json["images"]) == 4
    assert sorted(set(per_person.index[:, 0])) == sorted(per_image.index[:, 0])
    # the unlabelled people are never a sample's main person
    db = PoseDB(coco_db)
    for img_id, main in per_person.index:
        assert db.people(int(img_id))["keypoints"][main, :, 2].astype(bool).sum() >= 5


# -- reduced-size JPEG decoding -------------------------------------------------------------
@pytest.mark.parametrize("mult,reduce", [(0.5, 2), (0.3, 4)])
def test_reduced_decode_keeps_alignment(coco_db, monkeypatch, mult, reduce):
    cfg = _coco_cfg()
    cfg.aug.scale_min = cfg.aug.scale_max = mult
    ds = PoseDataset(coco_db, "train", config=cfg, return_meta=True)
    j = 0                                  # 000000000785.jpg: one 347 px tall person
    reduced = [ds.get(j, seed)[0] for seed in range(4)]
    assert all(r[5]["reduce"] == reduce for r in reduced)
    monkeypatch.setattr(dataset_mod, "_reduce_factor", lambda scale: 1)
    full = [ds.get(j, seed)[0] for seed in range(4)]
    info = ds.db.image_info(int(ds.index[j, 0]))
    for r, f in zip(reduced, full):
        assert f[5]["reduce"] == 1
        for a, b in zip(r[1:5], f[1:5]):       # targets do not depend on the decode
            np.testing.assert_array_equal(a, b)
        M = np.array(r[5]["affine"])
        inside = T.warp_mask(np.ones((info["height"], info["width"]), np.float32), M,
                             cfg.aug.input_size, border=0.0)
        inside = cv2.erode((inside > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert inside.sum() > 2000
        ir, ifull = T.denormalize_image(r[0]).astype(float), T.denormalize_image(f[0])
        diff = np.abs(ir - ifull)[inside].mean()
        assert diff < 8.0
        # sensitivity: the reduced image placed without the (r-1)/2 pixel-centre offset,
        # or one decoded pixel off, agrees worse with the full decode
        data = ds.db.image_bytes(int(ds.index[j, 0]))
        img, rr, channels = decode_image(data, reduce, channels="any",
                                         expect_size=(info["width"], info["height"]))
        assert rr == reduce
        for off, margin in ((0.0, 0.3), (reduce + (reduce - 1) / 2, 2.0)):
            wrong = np.array([[reduce, 0, off], [0, reduce, off]])
            crop = T.warp_image(img, M @ np.vstack([wrong, [0, 0, 1]]), cfg.aug.input_size)
            if channels == "rgb":
                crop = crop[..., ::-1]
            assert np.abs(crop.astype(float) - ifull)[inside].mean() > diff + margin


# -- the fast paths equal the plain ones ------------------------------------------------------
def test_mask_warped_over_its_region_only_equals_the_full_warp():
    rng = np.random.default_rng(4)
    h, w, S = 300, 420, 368
    for trial in range(20):
        x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        sub = (rng.random((int(rng.integers(5, 60)), int(rng.integers(5, 60)))) > 0.5)
        sub = 1.0 - sub.astype(np.float32)
        full = np.ones((h, w), np.float32)
        full[y0:y0 + sub.shape[0], x0:x0 + sub.shape[1]] = sub
        M = T.affine_matrix(rng.uniform(0, [w, h]), rng.uniform(0.3, 2.0),
                            rng.uniform(-40, 40), S, rng.uniform(-40, 40, 2), trial % 2 == 1)
        ref = T.warp_mask(full, M, S)
        roi = T.crop_region(M, (x0, y0, x0 + sub.shape[1] - 1, y0 + sub.shape[0] - 1), S)
        if roi is None:
            assert (ref == 1).all()
            continue
        got = T.warp_mask(sub, M, S, offset=(x0, y0), roi=roi)
        # OpenCV rounds source coordinates to 1/32 px; the shifted origin may round the
        # other way on a few edge pixels
        np.testing.assert_allclose(got, ref, atol=1 / 32 + 1e-6)
        assert np.abs(got - ref).mean() < 1e-4


def test_normalisation_paths_agree():
    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3)).astype(np.uint8)
    ref = (img.transpose(2, 0, 1).astype(np.float32) - 128) / 256
    np.testing.assert_array_equal(T.normalize_image(img), ref)
    np.testing.assert_array_equal(T.normalize_image(img.astype(np.float32)), ref)
    np.testing.assert_array_equal(T.normalize_image(img[..., ::-1], channels="rgb"), ref)
    np.testing.assert_array_equal(T.normalize_image(img[:, ::2]), ref[:, :, ::2])
    out = np.empty((3, 70, 50), np.float32).transpose(0, 2, 1)       # not contiguous
    assert T.normalize_image(img, out=out) is out
    np.testing.assert_array_equal(out, ref)
