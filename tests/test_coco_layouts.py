"""coco_parse on keypoint files of any layout: COCO-WholeBody and CMU's 23-point foot
files (feet kept), CrowdPose-style and custom files, and the one-line errors."""
import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mxpose.data.coco import CocoFormatError, ingest_coco, layout_name_from_file
from mxpose.data.store import PoseDB
from mxpose.skeleton import get_skeleton

from helpers import sample_json, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "coco_parse.py")


def _wholebody(coco_sample):
    return sample_json(coco_sample, "test_coco_wholebody.json")


def _stored_by_source(db):
    out = {}
    for i in db.image_ids():
        p = db.people(int(i))
        for sid, kp in zip(p["source_id"], p["keypoints"]):
            out[int(sid)] = kp
    return out


def _expected_feet(a):
    kp = np.array(a["keypoints"] + (a["foot_kpts"] if a["foot_valid"] else [0] * 18),
                  np.float32).reshape(23, 3)
    kp[kp[:, 2] == 0] = 0
    return kp


def test_wholebody_file_keeps_the_feet_exactly(coco_sample, tmp_path):
    out = str(tmp_path / "wb.db")
    ingest_coco(os.path.join(coco_sample, "test_coco_wholebody.json"), coco_sample, out,
                progress=False)
    db = PoseDB(out)
    assert db.skeleton == get_skeleton("coco_foot")
    stored = _stored_by_source(db)
    anns = _wholebody(coco_sample)["annotations"]
    assert len(stored) == len(anns) == 14
    no_feet = 0
    for a in anns:
        np.testing.assert_array_equal(stored[a["id"]], _expected_feet(a))
        if not a["foot_valid"]:
            no_feet += 1
            assert not stored[a["id"]][17:].any()      # unlabelled, never zero-labelled
    assert no_feet == 4
    # 10 people with valid feet (the sample's README), their labelled foot points stored
    assert sum(int((stored[a["id"]][17:, 2] > 0).sum()) for a in anns) == sum(
        int(sum(v > 0 for v in a["foot_kpts"][2::3])) for a in anns if a["foot_valid"])


def _foot23(coco_sample, tmp_path, n=23):
    """CMU's foot-json form of the WholeBody sample: COCO's 17 then the 6 foot points."""
    d = _wholebody(coco_sample)
    for a in d["annotations"]:
        feet = a["foot_kpts"] if a["foot_valid"] else [0] * 18
        a["keypoints"] = (a["keypoints"] + feet)[:3 * n] + [0] * max(0, 3 * (n - 23))
        for k in [k for k in a if k.endswith(("_kpts", "_valid", "_box"))]:
            del a[k]
    return write_json(d, tmp_path / "person_keypoints_val2017_foot_v1.json"), d


def test_cmu_foot_file_is_stored_as_coco_foot(coco_sample, tmp_path):
    path, d = _foot23(coco_sample, tmp_path)
    out = str(tmp_path / "foot.db")
    ingest_coco(path, coco_sample, out, progress=False)
    db = PoseDB(out)
    assert db.skeleton.name == "coco_foot"
    stored = _stored_by_source(db)
    for a, w in zip(d["annotations"], _wholebody(coco_sample)["annotations"]):
        np.testing.assert_array_equal(stored[a["id"]], _expected_feet(w))


def _run(*args):
    return subprocess.run([sys.executable, TOOL, "--no-progress", *args],
                          capture_output=True, text=True, timeout=300)


def _one_line_error(r, *needles):
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if not l.startswith("warning:")]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_foot_file_with_other_count_is_one_line_error(coco_sample, tmp_path):
    path, _ = _foot23(coco_sample, tmp_path, n=17)
    r = _run("--annotations", path, "--images", coco_sample, "--out", str(tmp_path / "x.db"))
    _one_line_error(r, "foot_v1.json", "69 numbers", "got 51", "foot file")
    assert not os.path.exists(tmp_path / "x.db")


def _custom_file(tmp_path, coco_sample, **change):
    """The COCO sample rewritten as a custom 5-point layout (head, hands, tail...)."""
    d = sample_json(coco_sample)
    names = ["Head", "Left Hand", "Right Hand", "Left Foot", "Right Foot"]
    src = [0, 9, 10, 15, 16]                     # nose, wrists, ankles
    for a in d["annotations"]:
        kp = np.array(a["keypoints"]).reshape(17, 3)[src]
        a["keypoints"] = [int(v) for v in kp.reshape(-1)]
    d["categories"] = [{"id": 1, "name": "person", "keypoints": names,
                        "skeleton": [[1, 2], [1, 3], [1, 4], [1, 5]]}]
    for k, v in change.items():
        exec(v, {"d": d})
    return write_json(d, tmp_path / "my_pets_train2017.json"), d


def test_custom_file_ingests_with_no_flag_and_db_info_shows_it(coco_sample, tmp_path):
    path, d = _custom_file(tmp_path, coco_sample)
    out = str(tmp_path / "c.db")
    r = _run("--annotations", path, "--images", coco_sample, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "layout 'my_pets': 5 keypoints, 4 limbs, 2 flip pairs" in r.stdout
    assert "0.067" in r.stderr and "Left Hand" in r.stderr      # default-sigma warning
    db = PoseDB(out)
    sk = db.skeleton
    assert sk.name == layout_name_from_file(path) == "my_pets"
    assert sk.limbs == (("Head", "Left Hand"), ("Head", "Right Hand"), ("Head", "Left Foot"),
                        ("Head", "Right Foot"))
    assert set(sk.flip_pairs) == {("Left Hand", "Right Hand"), ("Left Foot", "Right Foot")}
    stored = _stored_by_source(db)
    for a in d["annotations"]:
        want = np.array(a["keypoints"], np.float32).reshape(5, 3)
        want[want[:, 2] == 0] = 0
        np.testing.assert_array_equal(stored[a["id"]], want)
    info = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "db_info.py"), out],
                          capture_output=True, text=True, timeout=120)
    assert "my_pets (5 keypoints, 4 limbs)" in info.stdout, info.stdout


def test_layout_name_and_sigmas_flags(coco_sample, tmp_path):
    path, _ = _custom_file(tmp_path, coco_sample)
    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps([0.03, 0.06, 0.06, 0.08, 0.08]))
    out = str(tmp_path / "c.db")
    r = _run("--annotations", path, "--images", coco_sample, "--out", out,
             "--layout-name", "pets5", "--sigmas", str(sig))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    sk = PoseDB(out).skeleton
    assert sk.name == "pets5" and sk.sigmas["Head"] == 0.03 and sk.sigmas["Right Foot"] == 0.08
    # a DB holds one layout: the same file under another name is refused in one line
    r = _run("--annotations", path, "--images", coco_sample, "--out", out)
    _one_line_error(r, "already holds", "pets5")


@pytest.mark.parametrize("change, needles", [
    ("d['categories'][0]['keypoints'] = []", ["has no 'keypoints' names"]),
    ("d['categories'][0]['skeleton'] = [[1, 6]]", ["skeleton entry #0 [1, 6]", "1..5"]),
    ("d['annotations'][2]['keypoints'] = d['annotations'][2]['keypoints'][:12]",
     ["annotation id", "15 numbers", "got 12"]),
    ("d['categories'].append(dict(d['categories'][0], id=2, name='dog', "
     "keypoints=['a', 'b'], skeleton=[[1, 2]]))", ["different layouts", "'person'", "'dog'"]),
    ("d['categories'] = [{'id': 1, 'name': 'person'}]", ["not a COCO keypoints file"]),
])
def test_custom_file_errors_are_one_line(coco_sample, tmp_path, change, needles):
    path, _ = _custom_file(tmp_path, coco_sample, c=change)
    # --strict: a malformed record stops the run too (by default it is left out, below)
    r = _run("--annotations", path, "--images", coco_sample, "--out", str(tmp_path / "e.db"),
             "--strict")
    _one_line_error(r, *needles)


def test_custom_file_record_of_the_wrong_length_is_left_out_and_named(coco_sample, tmp_path):
    path, d = _custom_file(tmp_path, coco_sample, c="d['annotations'][2]['keypoints'] = "
                                                     "d['annotations'][2]['keypoints'][:12]")
    out = str(tmp_path / "e.db")
    r = _run("--annotations", path, "--images", coco_sample, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "keypoints of the wrong length" in r.stdout, r.stdout
    with open(out + ".skipped.json") as f:
        report = f.read()
    assert f"annotation id {d['annotations'][2]['id']}" in report and "got 12" in report


def test_crowdpose_names_are_the_known_layout(coco_sample, tmp_path):
    from mxpose.data.coco import load_coco_keypoints
    names = ["left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
             "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
             "right_ankle", "head", "neck"]
    d = sample_json(coco_sample)
    d["categories"][0]["keypoints"] = names    # COCO's 17-point skeleton list stays
    for a in d["annotations"]:
        a["keypoints"] = a["keypoints"][15:] + [0, 0, 0, 0, 0, 0]
    c = load_coco_keypoints(write_json(d, tmp_path / "crowdpose_val.json"))
    assert c.layout is get_skeleton("crowdpose") and not c.warnings


def test_foot_ap_beside_coco17_ap(coco_sample, tmp_path):
    """Perfect detections score 1 on both; moving only the feet lowers only the foot AP."""
    from mxpose.eval.coco import evaluate_keypoints, gt_from_db
    from mxpose.eval.runner import keypoint_subset
    out = str(tmp_path / "wb.db")
    ingest_coco(os.path.join(coco_sample, "test_coco_wholebody.json"), coco_sample, out,
                split="val", progress=False)
    db = PoseDB(out)
    sk = db.skeleton
    gt = gt_from_db(db, "val")
    res = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
            "score": 1.0} for a in gt["annotations"]]
    body = list(range(17))
    feet = list(range(17, 23))
    assert evaluate_keypoints(*keypoint_subset(gt, res, body))["AP"] == pytest.approx(1.0)
    assert evaluate_keypoints(*keypoint_subset(gt, res, feet),
                              sigmas=sk.sigma_array[feet])["AP"] == pytest.approx(1.0)
    moved = []
    for r in res:
        kp = np.array(r["keypoints"]).reshape(23, 3)
        kp[17:, :2] += 15.0
        moved.append(dict(r, keypoints=[float(v) for v in kp.reshape(-1)]))
    assert evaluate_keypoints(*keypoint_subset(gt, moved, body))["AP"] == pytest.approx(1.0)
    assert evaluate_keypoints(*keypoint_subset(gt, moved, feet),
                              sigmas=sk.sigma_array[feet])["AP"] < 0.9


def test_evaluate_oracle_on_wholebody_reports_foot_ap(coco_sample, tmp_path):
    out = str(tmp_path / "wb.db")
    ingest_coco(os.path.join(coco_sample, "test_coco_wholebody.json"), coco_sample, out,
                split="val", progress=False)
    js = str(tmp_path / "o.json")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "evaluate.py"), "--db",
                        out, "--oracle", "--json", js, "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "the 6 foot points" in r.stdout
    fig = json.load(open(js))["oracle"]["0"]
    assert fig["coco"]["AP"] >= 0.95 and fig["foot"]["AP"] >= 0.5    # body25 oracle


def test_wholebody_db_trains_as_body25(coco_sample, tmp_path):
    """A coco_foot DB read as body25: 26 heatmaps, 52 PAF channels, the feet rendered."""
    from mxpose.config import default_config
    from mxpose.data.dataset import PoseDataset
    out = str(tmp_path / "wb.db")
    ingest_coco(os.path.join(coco_sample, "test_coco_wholebody.json"), coco_sample, out,
                progress=False)
    cfg = default_config()
    cfg.data.skeleton = "body25"
    ds = PoseDataset(out, "train", config=cfg, train=False, sample_per="image",
                     return_meta=True)
    sk = get_skeleton("body25")
    img, heat, heat_mask, paf, paf_mask, meta = ds[0]
    assert heat.shape[0] == 26 and paf.shape[0] == 52
    kp = meta["keypoints"]
    feet = [sk.index(n) for n in sk.keypoints[19:]]
    assert (kp[:, feet, 2] > 0).any()                  # the sample's first image has feet
    assert min(float(heat[k].max()) for k in feet if (kp[:, k, 2] > 0).any()) > 0.5
