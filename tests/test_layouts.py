"""Layouts read from COCO-format categories (names -> flip pairs, 1-based skeleton ->
limbs, unreachable parts) and the shipped BODY_25 / BODY_25B / COCO+feet layouts."""
import json
import os

import numpy as np
import pytest

from mxpose.skeleton import (DEFAULT_SIGMA, SkeletonError, canonical_name, check_connected,
                             components, convert, get_skeleton, infer_flip_pairs,
                             layout_from_category, match_known_layout, propose_limbs)

COCO_NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
              "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
              "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
COCO_SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7],
                 [6, 8], [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5],
                 [4, 6], [5, 7]]
CROWDPOSE_NAMES = ["left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                   "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                   "right_knee", "left_ankle", "right_ankle", "head", "neck"]


@pytest.mark.parametrize("name, want", [
    ("left_shoulder", "l_shoulder"), ("Left Shoulder", "l_shoulder"),
    ("  LEFT   shoulder ", "l_shoulder"), ("l_shoulder", "l_shoulder"),
    ("L_Shoulder", "l_shoulder"), ("LShoulder", "l_shoulder"), ("left-shoulder", "l_shoulder"),
    ("shoulder_left", "l_shoulder"), ("Right Front Paw", "r_front_paw"),
    ("RBigToe", "r_big_toe"), ("MidHip", "mid_hip"), ("nose", "nose"), ("tail tip", "tail_tip"),
    ("lip", "lip"), ("leg", "leg")])
def test_canonical_name(name, want):
    assert canonical_name(name) == want


def test_flip_pairs_from_l_r_names():
    names = ["nose", "l_eye", "r_eye", "l_paw", "r_paw", "tail", "l_lonely"]
    assert set(infer_flip_pairs(names)) == {("l_eye", "r_eye"), ("l_paw", "r_paw")}


def test_flip_pairs_from_left_right_words_any_case_and_spaces():
    names = ["Nose", "Left Ear", "right ear", "LEFT FRONT PAW", "Right Front Paw", "Tail"]
    assert set(infer_flip_pairs(names)) == {("Left Ear", "right ear"),
                                            ("LEFT FRONT PAW", "Right Front Paw")}


def _custom(names, skeleton, **kw):
    return layout_from_category({"id": 1, "name": "animal", "keypoints": names,
                                 "skeleton": skeleton}, "pets", **kw)


def test_custom_layout_limbs_from_one_based_skeleton_and_mirrors():
    names = ["Nose", "Left Ear", "Right Ear", "Left Paw", "Right Paw", "tail"]
    sk, perm, warns = _custom(names, [[1, 2], [1, 3], [1, 4], [4, 5], [2, 1], [1, 6]])
    assert sk.name == "pets" and list(sk.keypoints) == names
    assert np.array_equal(perm, np.arange(6))
    # 1-based -> names; the duplicate [2, 1] is dropped; (Nose, Right Paw) mirrors
    # (Nose, Left Paw) and is added with a warning.
    assert sk.limbs == (("Nose", "Left Ear"), ("Nose", "Right Ear"), ("Nose", "Left Paw"),
                        ("Left Paw", "Right Paw"), ("Nose", "tail"), ("Nose", "Right Paw"))
    assert any("mirror" in w for w in warns)
    assert set(sk.flip_pairs) == {("Left Ear", "Right Ear"), ("Left Paw", "Right Paw")}
    # sigmas: known body names keep COCO's, the rest the documented default, with a warning
    assert sk.sigmas["Nose"] == pytest.approx(0.026)
    assert sk.sigmas["tail"] == DEFAULT_SIGMA and sk.sigmas["Left Paw"] == DEFAULT_SIGMA
    assert any("tail" in w and str(DEFAULT_SIGMA) in w for w in warns)
    # the flip maps are consistent (Skeleton validated the limb/flip agreement)
    assert sk.limb_flip_index.shape == (6,)


def test_custom_sigmas_list_or_dict():
    names = ["a", "l_b", "r_b"]
    sk, _, warns = _custom(names, [[1, 2], [1, 3]], sigmas=[0.1, 0.2, 0.2])
    assert sk.sigmas == {"a": 0.1, "l_b": 0.2, "r_b": 0.2} and not warns
    sk, _, _ = _custom(names, [[1, 2], [1, 3]], sigmas={"a": 0.3, "l_b": 0.2, "r_b": 0.2})
    assert sk.sigmas["a"] == 0.3
    with pytest.raises(SkeletonError, match="2 sigmas for 3 keypoints"):
        _custom(names, [[1, 2], [1, 3]], sigmas=[0.1, 0.2])
    with pytest.raises(SkeletonError, match="missing"):
        _custom(names, [[1, 2], [1, 3]], sigmas={"a": 0.3})


@pytest.mark.parametrize("skeleton, match", [
    ([[0, 1]], r"out of range: COCO skeletons number the 3 keypoints 1..3"),   # 0-based file
    ([[1, 4]], "out of range"), ([[1]], "not a pair"), ([[2, 2]], "itself"),
    ([["a", "b"]], "not a pair")])
def test_skeleton_index_errors(skeleton, match):
    with pytest.raises(SkeletonError, match=match):
        _custom(["a", "b", "c"], skeleton)


def test_no_keypoint_names_is_an_error():
    with pytest.raises(SkeletonError, match="has no 'keypoints' names"):
        layout_from_category({"id": 1, "name": "person", "keypoints": []}, "x")
    with pytest.raises(SkeletonError, match="non-empty strings"):
        layout_from_category({"id": 1, "name": "person", "keypoints": ["a", ""]}, "x")


def test_known_layouts_by_name_ignore_the_file_skeleton():
    # CrowdPose's release file carries COCO's 17-point skeleton: indices up to 17 for 14
    # keypoints, which a known layout must ignore.
    sk, perm, warns = layout_from_category({"id": 1, "name": "person",
                                            "keypoints": CROWDPOSE_NAMES,
                                            "skeleton": COCO_SKELETON}, "ignored")
    assert sk is get_skeleton("crowdpose") and np.array_equal(perm, np.arange(14))
    sk, perm, _ = layout_from_category({"keypoints": COCO_NAMES, "skeleton": COCO_SKELETON},
                                       "ignored")
    assert sk is get_skeleton("coco")
    # another order of the same names: still COCO, with the permutation to its order
    shuffled = COCO_NAMES[::-1]
    sk, perm, _ = layout_from_category({"keypoints": shuffled}, "ignored")
    assert sk is get_skeleton("coco")
    assert [canonical_name(shuffled[i]) for i in perm] == list(sk.keypoints)
    assert match_known_layout(["a", "b"]) is None


def test_unreachable_parts_are_named_and_joined():
    names = ["head", "l_hand", "r_hand", "tail", "tail_tip"]
    sk, _, _ = _custom(names, [[1, 2], [1, 3], [4, 5]])
    assert components(sk) == [["head", "l_hand", "r_hand"], ["tail", "tail_tip"]]
    with pytest.raises(SkeletonError) as e:
        check_connected(sk)
    msg = str(e.value)
    assert "['tail', 'tail_tip'] are not connected" in msg and "\n" not in msg
    assert '[["head", "tail"]]' in msg                   # no data: first names
    # with people, the closest pair across the two groups is proposed
    P = np.zeros((3, 5, 3), np.float32)
    P[:, :, 2] = 2
    P[:, 0, :2] = (0, 0)          # head
    P[:, 1, :2] = (-5, 10)        # l_hand
    P[:, 2, :2] = (5, 10)         # r_hand
    P[:, 3, :2] = (6, 14)         # tail, next to r_hand
    P[:, 4, :2] = (6, 30)
    assert propose_limbs(sk, P) == [("r_hand", "tail")]
    for name in ("coco", "crowdpose", "body25", "body25b", "coco_foot", "openpose_coco18"):
        check_connected(get_skeleton(name))


# -- BODY_25 / BODY_25B ----------------------------------------------------------------------
def _cmu_layouts(openpose_models):
    with open(os.path.join(openpose_models, "openpose_layouts.json")) as f:
        return json.load(f)


def test_body25_tables_match_openpose(openpose_models):
    ref = _cmu_layouts(openpose_models)["BODY_25"]
    sk = get_skeleton("body25")
    parts = [canonical_name(p) for p in ref["parts"]]
    assert parts[-1] == "background" and list(sk.keypoints) == parts[:-1]
    assert (sk.num_heatmaps, sk.num_pafs, sk.num_limbs) == (26, 52, 26)
    # PAF channel block of limb l (ours) is 2l, 2l+1: CMU's pair owning those channels
    for (a, b), (cx, cy) in zip(ref["pairs"], ref["map_index"]):
        assert cy == cx + 1 and cx % 2 == 0
        assert sk.limbs[cx // 2] == (parts[a], parts[b])
    assert ("r_shoulder", "r_ear") in sk.limbs and ("l_shoulder", "l_ear") in sk.limbs


def test_body25b_tables_match_openpose(openpose_models):
    ref = _cmu_layouts(openpose_models)["BODY_25B"]
    sk = get_skeleton("body25b")
    parts = [canonical_name(p) for p in ref["parts"]]
    assert list(sk.keypoints) == parts and sk.num_heatmaps == 26
    for (a, b), (cx, cy) in zip(ref["pairs"], ref["map_index"]):
        assert sk.limbs[cx // 2] == (parts[a], parts[b]) and cy == cx + 1


def test_body25_flip_and_sigmas():
    sk = get_skeleton("body25")
    for a, b in sk.flip_pairs:
        assert a[2:] == b[2:] and a[:2] == "l_" and b[:2] == "r_"
    assert len(sk.flip_pairs) == 11
    # COCO's body sigmas, COCO-WholeBody's foot sigmas (documented in mxpose.skeleton)
    assert sk.sigmas["l_knee"] == 0.087 and sk.sigmas["neck"] == 0.079
    assert sk.sigmas["mid_hip"] == 0.107
    assert [sk.sigmas[k] for k in ("l_big_toe", "l_small_toe", "l_heel", "r_big_toe",
                                   "r_small_toe", "r_heel")] == [.068, .066, .066, .092,
                                                                 .094, .094]


def test_coco_foot_to_body25_and_back():
    foot = get_skeleton("coco_foot")
    rng = np.random.default_rng(0)
    kp = np.zeros((3, 23, 3), np.float32)
    kp[..., :2] = rng.uniform(0, 100, (3, 23, 2))
    kp[..., 2] = 2
    kp[1, foot.index("l_hip"), 2] = 0           # person 1: no mid-hip
    kp[1, foot.index("l_hip"), :2] = 0
    kp[2, 17:] = 0                              # person 2: feet unlabelled
    kp[2, foot.index("r_shoulder"), 2] = 1      # occluded: the neck is occluded too
    b = convert(kp, "coco_foot", "body25")
    sk = get_skeleton("body25")
    ls, rs = foot.index("l_shoulder"), foot.index("r_shoulder")
    np.testing.assert_allclose(b[0, sk.index("neck"), :2], (kp[0, ls, :2] + kp[0, rs, :2]) / 2)
    assert b[0, sk.index("neck"), 2] == 2 and b[2, sk.index("neck"), 2] == 1
    assert b[1, sk.index("mid_hip"), 2] == 0 and b[0, sk.index("mid_hip"), 2] == 2
    for name in foot.keypoints[17:]:
        np.testing.assert_array_equal(b[:, sk.index(name)], kp[:, foot.index(name)])
    assert not b[2, [sk.index(n) for n in foot.keypoints[17:]], 2].any()
    np.testing.assert_array_equal(convert(b, "body25", "coco_foot"), kp)
    np.testing.assert_array_equal(convert(b, "body25", "coco"), kp[:, :17])
    # from plain COCO the feet stay unlabelled
    c = convert(kp[:, :17], "coco", "body25")
    assert not c[:, [sk.index(n) for n in foot.keypoints[17:]], 2].any()


def test_predictions_without_feet_convert_to_a_layout_with_feet():
    kp = np.ones((2, 18, 3), np.float32) * 7
    with pytest.raises(SkeletonError, match="lacks"):
        convert(kp, "openpose_coco18", "coco_foot")
    out = convert(kp, "openpose_coco18", "coco_foot", missing="unlabelled")
    assert out.shape == (2, 23, 3)
    np.testing.assert_array_equal(out[:, :17], convert(kp, "openpose_coco18", "coco"))
    assert not out[:, 17:].any()


def test_custom_layout_never_takes_a_shipped_name():
    sk, _, warns = layout_from_category({"keypoints": ["a", "b"], "skeleton": [[1, 2]]},
                                        "coco")
    assert sk.name == "coco_custom" and any("shipped" in w for w in warns)
