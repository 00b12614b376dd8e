import json
import os

import numpy as np
import pytest

from mxpose.eval import evaluate_keypoints, format_pckh, format_table, pckh, results_from_people


def _coco_gt(coco_sample):
    with open(os.path.join(coco_sample, "test_coco.json")) as f:
        return json.load(f)


def _perfect_results(gt, jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    res = []
    for a in gt["annotations"]:
        if a.get("iscrowd") or a["num_keypoints"] == 0:
            continue
        kp = np.array(a["keypoints"], np.float32).reshape(17, 3)
        kp[:, :2] += rng.normal(0, jitter, (17, 2)) * (kp[:, 2:3] > 0)
        res += results_from_people(a["image_id"], kp[None], np.array([1.0]))
    return res


def test_perfect_predictions_score_one(coco_sample):
    gt = _coco_gt(coco_sample)
    stats = evaluate_keypoints(gt, _perfect_results(gt))
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


def test_noise_lowers_ap_and_empty_is_zero(coco_sample):
    gt = _coco_gt(coco_sample)
    noisy = evaluate_keypoints(gt, _perfect_results(gt, jitter=15.0))
    assert 0.0 < noisy["AP"] < 0.95
    assert evaluate_keypoints(gt, [])["AP"] == 0.0


def test_table_has_ten_standard_lines():
    t = format_table([0.5] * 10).splitlines()
    assert len(t) == 10
    assert t[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all")
    assert t[0].endswith("= 0.500")
    assert "Average Recall" in t[5]


def test_pckh_matching_and_threshold():
    names = [f"j{i}" for i in range(4)]
    gt = np.zeros((2, 4, 3), np.float32)
    gt[0, :, :2] = [[10, 10], [20, 10], [30, 10], [40, 10]]
    gt[1, :, :2] = gt[0, :, :2] + [200, 0]
    gt[..., 2] = 2
    gt[1, 3, 2] = 0                                    # unlabelled: not counted
    hb = np.array([[0, 0, 30, 40], [200, 0, 230, 40]], np.float32)   # head size 0.6*50 = 30
    pred = gt[::-1].copy()                             # order must not matter
    pred[1, 0, 0] += 14.9                              # 14.9 <= 0.5*30: hit
    pred[1, 1, 0] += 15.5                              # miss
    res = pckh([gt], [hb], [pred], names)
    assert res["count"] == 7
    assert res["per_joint"]["j0"] == pytest.approx(100.0)
    assert res["per_joint"]["j1"] == pytest.approx(50.0)
    assert res["per_joint"]["j3"] == pytest.approx(100.0)
    assert res["mean"] == pytest.approx((100 + 50 + 100 + 100) / 4)
    assert "PCKh@0.5" in format_pckh(res)
    # no predictions at all: 0%
    assert pckh([gt], [hb], [np.zeros((0, 4, 3))], names)["mean"] == 0.0
