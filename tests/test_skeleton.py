import numpy as np
import pytest

from mxpose import skeleton as sk
from mxpose.skeleton import Skeleton, SkeletonError, convert, get_skeleton


def test_shipped_layouts_sizes_and_orders():
    coco = get_skeleton("coco")
    assert coco.num_keypoints == 17 and coco.keypoints[0] == "nose"
    assert coco.keypoints[5:7] == ("l_shoulder", "r_shoulder")
    assert coco.sigma_array.shape == (17,)
    assert coco.sigmas["l_hip"] == pytest.approx(0.107)
    op = get_skeleton("openpose_coco18")
    assert (op.num_keypoints, op.num_limbs, op.num_heatmaps, op.num_pafs) == (18, 19, 19, 38)
    assert op.keypoints[:3] == ("nose", "neck", "r_shoulder")
    # CMU limb order: first neck-r_hip, then r_hip-r_knee; last l_eye-l_ear.
    assert op.limbs[0] == ("neck", "r_hip") and op.limbs[-1] == ("l_eye", "l_ear")
    assert op.limb_index[0].tolist() == [1, 8]
    assert sorted(op.no_start_limb_index.tolist()) == [9, 13]
    mpii = get_skeleton("mpii")
    assert mpii.num_keypoints == 16
    assert mpii.keypoints[6:10] == ("pelvis", "thorax", "upper_neck", "head_top")
    mpi = get_skeleton("openpose_mpi15")
    assert (mpi.num_keypoints, mpi.num_limbs) == (15, 14)
    assert mpi.keypoints[-1] == "chest"


@pytest.mark.parametrize("name", ["coco", "openpose_coco18", "mpii", "openpose_mpi15"])
def test_flip_is_involution_and_swaps_sides(name):
    s = get_skeleton(name)
    assert np.array_equal(s.flip_index[s.flip_index], np.arange(s.num_keypoints))
    for k, n in enumerate(s.keypoints):
        m = s.keypoints[s.flip_index[k]]
        if n.startswith("l_"):
            assert m == "r_" + n[2:]
        elif n.startswith("r_"):
            assert m == "l_" + n[2:]
        else:
            assert m == n
    lf = s.limb_flip_index
    assert np.array_equal(lf[lf], np.arange(s.num_limbs))
    idx, sign = s.paf_flip_index()
    assert sorted(idx.tolist()) == list(range(s.num_pafs))
    assert np.all(sign[0::2] == -sign[1::2])


def test_flip_keypoints_twice_is_identity():
    s = get_skeleton("openpose_coco18")
    rng = np.random.default_rng(0)
    k = rng.uniform(0, 100, (3, 18, 3)).astype(np.float32)
    k[..., 2] = rng.integers(0, 3, (3, 18))
    k[k[..., 2] == 0] = 0
    f = s.flip_keypoints(k, 100)
    assert not np.allclose(f, k)
    np.testing.assert_allclose(s.flip_keypoints(f, 100), k, atol=1e-5)
    # the left shoulder of the flipped person is the mirrored right shoulder
    ls, rs = s.index("l_shoulder"), s.index("r_shoulder")
    lab = k[:, rs, 2] > 0
    np.testing.assert_allclose(f[lab, ls, 0], 99 - k[lab, rs, 0], atol=1e-5)


def test_validation_errors():
    with pytest.raises(SkeletonError, match="unknown keypoint 'c'"):
        Skeleton("x", ["a", "b"], [("a", "c")])
    with pytest.raises(SkeletonError, match="duplicate keypoint"):
        Skeleton("x", ["a", "a"], [])
    with pytest.raises(SkeletonError, match="involution"):
        Skeleton("x", ["a", "b", "c"], [], flip_pairs=[("a", "b"), ("a", "c")])
    with pytest.raises(SkeletonError, match="not a limb"):
        Skeleton("x", ["l_a", "r_a", "m"], [("l_a", "m")], flip_pairs=[("l_a", "r_a")])
    with pytest.raises(SkeletonError, match="sigmas"):
        Skeleton("x", ["a", "b"], [("a", "b")], sigmas={"a": 0.1})
    with pytest.raises(SkeletonError, match="unknown skeleton 'nope'"):
        get_skeleton("nope")
    with pytest.raises(SkeletonError, match="unknown keys"):
        Skeleton.from_dict({"name": "x", "keypoints": ["a"], "limbs": [], "bones": []})


def test_custom_skeleton_from_dict_and_register():
    d = {"name": "hand3", "keypoints": ["wrist", "l_tip", "r_tip"],
         "limbs": [["wrist", "l_tip"], ["wrist", "r_tip"]],
         "flip_pairs": [["l_tip", "r_tip"]]}
    s = Skeleton.from_dict(d)
    assert s.limb_flip_index.tolist() == [1, 0]
    assert Skeleton.from_dict(s.to_dict()) == s
    sk.register_skeleton(d)
    assert get_skeleton("hand3") == s
    with pytest.raises(SkeletonError, match="already registered"):
        sk.register_skeleton(dict(d, limbs=[["wrist", "l_tip"]], flip_pairs=[]))


def test_reversed_limb_flip_sign():
    # limb l_a -> m flips onto m -> r_a, listed the other way round: direction reverses.
    s = Skeleton("y", ["l_a", "r_a", "m"], [("l_a", "m"), ("m", "r_a")],
                 flip_pairs=[("l_a", "r_a")])
    assert s.limb_flip_index.tolist() == [1, 0]
    assert s.limb_flip_sign.tolist() == [-1.0, -1.0]
    idx, sign = s.paf_flip_index()
    assert idx.tolist() == [2, 3, 0, 1]
    assert sign.tolist() == [1.0, -1.0, 1.0, -1.0]


def _coco_person(rng, vis):
    k = np.zeros((17, 3), np.float32)
    k[:, :2] = rng.uniform(0, 200, (17, 2))
    k[:, 2] = vis
    k[k[:, 2] == 0, :2] = 0
    return k


def test_coco_to_openpose_neck_rules():
    rng = np.random.default_rng(1)
    coco, op = get_skeleton("coco"), get_skeleton("openpose_coco18")
    ls, rs = coco.index("l_shoulder"), coco.index("r_shoulder")
    people = []
    for vl, vr in [(2, 2), (2, 1), (1, 1), (0, 2), (2, 0)]:
        v = np.full(17, 2.0)
        v[ls], v[rs] = vl, vr
        people.append(_coco_person(rng, v))
    a = np.stack(people)
    b = convert(a, "coco", "openpose_coco18")
    neck = b[:, op.index("neck")]
    np.testing.assert_allclose(neck[0, :2], (a[0, ls, :2] + a[0, rs, :2]) / 2, rtol=1e-6)
    assert neck[:, 2].tolist() == [2, 1, 1, 0, 0]
    assert np.all(neck[3:, :2] == 0)
    for name in coco.keypoints:
        np.testing.assert_array_equal(b[:, op.index(name)], a[:, coco.index(name)])
    back = convert(b, "openpose_coco18", "coco")
    np.testing.assert_array_equal(back, a)
    # single person form
    np.testing.assert_array_equal(convert(a[0], "coco", "openpose_coco18"), b[0])


def test_mpii_to_mpi15_chest_rules_and_back():
    rng = np.random.default_rng(2)
    mpii, mpi = get_skeleton("mpii"), get_skeleton("openpose_mpi15")
    pel, tho = mpii.index("pelvis"), mpii.index("thorax")
    k = np.zeros((4, 16, 3), np.float32)
    k[..., :2] = rng.uniform(0, 300, (4, 16, 2))
    k[..., 2] = 2
    k[1, pel, 2] = 1
    k[2, tho] = 0
    # hips symmetric about the pelvis so the mid-hip estimate equals it
    k[:, mpii.index("l_hip"), :2] = k[:, pel, :2] + [10, 0]
    k[:, mpii.index("r_hip"), :2] = k[:, pel, :2] - [10, 0]
    b = convert(k, "mpii", "openpose_mpi15")
    chest = b[:, mpi.index("chest")]
    np.testing.assert_allclose(chest[0, :2], (k[0, pel, :2] + k[0, tho, :2]) / 2, rtol=1e-6)
    assert chest[:, 2].tolist() == [2, 1, 0, 2]
    assert np.all(chest[2] == 0)
    for name in mpi.keypoints[:-1]:
        np.testing.assert_array_equal(b[:, mpi.index(name)], k[:, mpii.index(name)])
    back = convert(b, "openpose_mpi15", "mpii")
    np.testing.assert_allclose(back[0, pel, :2], k[0, pel, :2], atol=1e-4)
    np.testing.assert_allclose(back[0, tho, :2], k[0, tho, :2], atol=1e-3)
    assert back[2, tho, 2] == 0


def test_convert_errors():
    with pytest.raises(SkeletonError, match="expected keypoints of shape"):
        convert(np.zeros((2, 18, 3)), "coco", "openpose_coco18")
    with pytest.raises(SkeletonError, match="no conversion"):
        convert(np.zeros((1, 17, 3)), "coco", "mpii")
