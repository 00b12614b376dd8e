import cv2
import numpy as np
import pytest

from mxpose.config import default_config
from mxpose.data import transforms as T
from mxpose.skeleton import get_skeleton


def _people(n=3, K=18, seed=0, w=320, h=240):
    rng = np.random.default_rng(seed)
    kp = np.zeros((n, K, 3), np.float32)
    kp[..., 0] = rng.uniform(0, w - 1, (n, K))
    kp[..., 1] = rng.uniform(0, h - 1, (n, K))
    kp[..., 2] = rng.integers(0, 3, (n, K))
    kp[kp[..., 2] == 0] = 0
    return kp


def test_affine_inverse_maps_back_within_0_01px():
    aug = default_config().aug
    skel = get_skeleton("openpose_coco18")
    rng = np.random.default_rng(0)
    augmenter = T.Augmenter(skel, aug)
    img = np.full((240, 320, 3), 100, np.uint8)
    kp = _people()
    for _ in range(20):
        out = augmenter(rng, img, kp, None, center=(160, 120), person_scale=0.5)
        M = np.array(out["meta"]["affine"])
        back = T.apply_affine(T.invert_affine(M), out["keypoints"])
        if out["meta"]["flip"]:
            back = back[:, skel.flip_index]
        lab = kp[..., 2] > 0
        assert np.abs(back[lab, :2] - kp[lab, :2]).max() < 0.01
        assert np.array_equal(back[..., 2], kp[..., 2])


def test_warped_image_agrees_with_warped_points():
    # A bright dot at a point must land where the affine maps the point.
    img = np.zeros((200, 300, 3), np.uint8)
    p = np.array([[[121.0, 77.0, 2.0]]], np.float32)
    cv2.circle(img, (121, 77), 3, (255, 255, 255), -1)
    for deg, flip in [(0, False), (30, False), (-35, True)]:
        M = T.affine_matrix((150, 100), 1.3, deg, 368, shift=(10, -5), flip=flip)
        crop = T.warp_image(img, M, 368, 0)
        q = T.apply_affine(M, p)[0, 0]
        ys, xs = np.nonzero(crop[..., 0] > 128)
        assert abs(xs.mean() - q[0]) < 0.5 and abs(ys.mean() - q[1]) < 0.5


def test_flip_matrix_twice_is_identity_on_points():
    M = T.affine_matrix((0, 0), 1.0, 0, 64, shift=(-31.5, -31.5), flip=True)  # pure mirror
    F = np.vstack([M, [0, 0, 1]])
    np.testing.assert_allclose((F @ F)[:2], np.eye(3)[:2], atol=1e-12)
    skel = get_skeleton("openpose_coco18")
    kp = _people(w=64, h=64)
    once = T.apply_affine(M, kp)[:, skel.flip_index]
    np.testing.assert_allclose(once, skel.flip_keypoints(kp, 64), atol=1e-4)


def test_outside_drop_and_keep():
    aug = default_config().aug
    aug.enabled = False
    skel = get_skeleton("openpose_coco18")
    kp = np.zeros((1, 18, 3), np.float32)
    kp[0, 0] = (100, 100, 2)
    kp[0, 1] = (5000, 100, 2)          # far outside any crop
    img = np.zeros((200, 200, 3), np.uint8)
    keep = T.Augmenter(skel, aug)(np.random.default_rng(0), img, kp, None, (100, 100), 0.6,
                                  train=False)
    assert keep["keypoints"][0, 1, 2] == 2
    aug.outside = "drop"
    drop = T.Augmenter(skel, aug)(np.random.default_rng(0), img, kp, None, (100, 100), 0.6,
                                  train=False)
    assert drop["keypoints"][0, 1, 2] == 0 and drop["keypoints"][0, 0, 2] == 2
    # without augmentation the main person's centre lands at the crop centre, scale 1
    np.testing.assert_allclose(drop["keypoints"][0, 0, :2], (183.5, 183.5), atol=1e-4)


def test_mask_padding_supervises_outside_image():
    aug = default_config().aug
    skel = get_skeleton("openpose_coco18")
    sup = np.zeros((50, 50), np.float32)      # whole image ignored
    out = T.Augmenter(skel, aug)(np.random.default_rng(1), np.zeros((50, 50, 3), np.uint8),
                                 np.zeros((0, 18, 3), np.float32), sup, (25, 25), 0.5)
    m = out["supervise"]
    assert m.shape == (368, 368)
    q = T.apply_affine(np.array(out["meta"]["affine"]), np.array([[25.0, 25.0]]))[0]
    assert m[0, 0] == 1.0 and m[int(round(q[1])), int(round(q[0]))] == 0.0
    assert out["image"][0, 0].tolist() == [128, 128, 128]


def test_sample_affine_ranges():
    aug = default_config().aug
    rng = np.random.default_rng(3)
    draws = [T.sample_affine(rng, (0, 0), 0.5, aug)[2] for _ in range(300)]
    mult = np.array([d["mult"] for d in draws])
    deg = np.array([d["degrees"] for d in draws])
    flips = np.mean([d["flip"] for d in draws])
    assert mult.min() >= 0.5 and mult.max() <= 1.1
    assert np.abs(deg).max() <= 40 and np.abs(deg).max() > 30
    assert 0.35 < flips < 0.65
    np.testing.assert_allclose(draws[0]["scale"], 0.6 / 0.5 * draws[0]["mult"])


def test_select_main_people_cmu_filter():
    kp = np.zeros((4, 17, 3), np.float32)
    kp[:, :, 2] = 2
    kp[2, 5:, 2] = 0                                    # only 5 labelled: qualifies
    kp[3, 4:, 2] = 0                                    # 4 labelled: does not
    people = {"keypoints": kp, "is_crowd": np.zeros(4, bool),
              "bbox": np.array([[0, 0, 100, 200], [10, 10, 100, 200], [300, 0, 100, 200],
                                [600, 0, 100, 200]], np.float32),
              "area": np.array([5000, 5000, 500, 5000], np.float32),
              "scale": np.full(4, np.nan, np.float32)}
    centers = people["bbox"][:, :2] + people["bbox"][:, 2:] / 2
    # person 1 is within 0.3*200 of person 0; person 2 too small (area 500 < 1024)
    assert T.select_main_people(people, centers).tolist() == [0]
    people["area"][2] = 2000
    assert T.select_main_people(people, centers).tolist() == [0, 2]


def test_normalize_roundtrip():
    img = np.random.default_rng(0).integers(0, 256, (7, 5, 3)).astype(np.uint8)
    x = T.normalize_image(img)
    assert x.shape == (3, 7, 5) and x.dtype == np.float32
    assert x[0, 0, 0] == pytest.approx((img[0, 0, 0] - 128) / 256)
    np.testing.assert_array_equal(T.denormalize_image(x), img)
